"""The embedding store: GeoParquet files, one per scene or batch of chips (layout in :mod:`ofa_embed.store.geoparquet`), and
DuckDB with the spatial extension over them (:mod:`ofa_embed.store.duck`). Knows no model.
"""

from ofa_embed.store.geoparquet import (
    PARTITION_KEYS,
    RESULT_COLUMNS,
    STORE_VERSION,
    TILE_COLUMNS,
    ChipColumns,
    StoreFile,
    TileRecords,
    describe_store,
    embedding_columns,
    embedding_matrix,
    epoch_micros,
    open_parquet,
    parquet_schema,
    partition_of,
    read_embeddings,
    read_metadata,
    read_parquet,
    read_tiles,
    scene_path,
    store_files,
    take_rows,
    tile_id,
    tiles_frame,
    write_chips,
    write_scene,
)

__all__ = [
    "PARTITION_KEYS", "RESULT_COLUMNS", "STORE_VERSION", "TILE_COLUMNS", "ChipColumns", "StoreFile", "TileRecords",
    "describe_store", "embedding_columns", "embedding_matrix", "epoch_micros", "open_parquet", "parquet_schema",
    "read_embeddings", "read_metadata", "read_parquet", "read_tiles", "partition_of", "scene_path", "store_files",
    "take_rows", "tile_id", "tiles_frame", "write_chips", "write_scene",
]
