"""The embedding store: GeoParquet files, one per scene or batch of chips (layout and writing in
:mod:`ofa_embed.store.geoparquet`, reading in :mod:`ofa_embed.store.reading`), and DuckDB with the spatial
extension over them (:mod:`ofa_embed.store.duck`). Knows no model.
"""

from ofa_embed.store.geoparquet import (
    PARTITION_KEYS,
    ROW_GROUP_ROWS,
    STORE_VERSION,
    ChipColumns,
    TileRecords,
    epoch_micros,
    open_parquet,
    parquet_schema,
    partition_of,
    read_parquet,
    row_group_rows,
    scene_path,
    store_files,
    tile_id,
    write_chips,
    write_scene,
    write_with_embeddings,
)
from ofa_embed.store.reading import (
    RESULT_COLUMNS,
    TILE_COLUMNS,
    StoreFile,
    describe_store,
    embedding_columns,
    embedding_matrix,
    read_embeddings,
    read_metadata,
    read_tiles,
    take_rows,
    tiles_frame,
)

__all__ = [
    "PARTITION_KEYS", "RESULT_COLUMNS", "ROW_GROUP_ROWS", "STORE_VERSION", "TILE_COLUMNS", "ChipColumns", "StoreFile",
    "TileRecords", "describe_store", "embedding_columns", "embedding_matrix", "epoch_micros", "open_parquet",
    "parquet_schema", "read_embeddings", "read_metadata", "read_parquet", "read_tiles", "partition_of", "row_group_rows",
    "scene_path", "store_files", "take_rows", "tile_id", "tiles_frame", "write_chips", "write_scene",
    "write_with_embeddings",
]
