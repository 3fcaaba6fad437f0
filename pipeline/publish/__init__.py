"""Stage 5, publishing: the store's documents (``documents``, ``user_lists`` on the Dask workers,
``live_export``), and the staged load with its atomic publish (``store``)."""
