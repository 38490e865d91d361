"""Embedding products made by others, read as their projects document them and written as this project's store.

One module per format, each citing the specification it follows:

- :mod:`~ofa_embed.interop.aef`: AlphaEarth Foundations / Google Satellite Embedding V1 (64-band int8 COGs);
- :mod:`~ofa_embed.interop.tessera`: TESSERA / geotessera (int8 ``.npy`` plus float32 scales, 0.1-degree tiles);
- :mod:`~ofa_embed.interop.tessera_zarr`: TESSERA's Zarr v3 store (``utm<NN>`` groups, ``(time, band, y, x)``);
- :mod:`~ofa_embed.interop.majortom`: Major TOM embedding datasets (Parquet of 224 px fragments);
- :mod:`~ofa_embed.interop.earthindex`: Earth Index (GeoParquet, 384-d SoftCon vectors, ``emb`` footer);
- :mod:`~ofa_embed.interop.clay`: Clay (GeoParquet chip vectors, v0 768-d and v1.5 1,024-d).

:mod:`~ofa_embed.interop.product` holds what they share (the product record, the store identity made from it,
selection by bbox and time, the writer); :mod:`~ofa_embed.interop.dense` the pixel products' grids, parts and
pooling, :mod:`~ofa_embed.interop.product_fields` their pixels kept as embedding fields;
:mod:`~ofa_embed.interop.importer` is ``ofa_embed.import_embeddings``;
:mod:`~ofa_embed.interop.stac` describes any store in STAC with the Embeddings extension. This module imports
nothing heavy: the CLI reads :data:`FORMATS` from it at start-up.
"""

FORMATS = ("aef", "tessera", "majortom", "earthindex", "clay")

__all__ = ["FORMATS"]
