"""Raster input, the only rasterio user: opening scenes (:mod:`.opening`) from their files (:mod:`.files`), the
scene read and normalised (:mod:`.scene`) through its file handles (:mod:`.source`), value checks
(:mod:`.checks`), acquisition dates (:mod:`.dates`), wavelengths (:mod:`.spectral`), what a file says about
itself (:mod:`.evidence`), band resampling (:mod:`.resample`) and the background tile reader (:mod:`.reader`).
Knows no model.
"""
