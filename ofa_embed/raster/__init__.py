"""Raster input, the only rasterio user: scenes (:mod:`.scene`), band resampling (:mod:`.resample`) and
the background tile reader (:mod:`.reader`). Knows no model.
"""
