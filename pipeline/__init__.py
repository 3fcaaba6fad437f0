"""Movie Time batch pipeline: MovieLens files to MongoDB, on Dask."""

__version__ = "0.1.0"
