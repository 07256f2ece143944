"""Raster and image I/O: GDAL-backed rasters, images and masks, and the files of a dataset folder."""
