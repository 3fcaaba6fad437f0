"""What the batch pipeline and the API share, and nothing else: both import this package, and it
imports neither (checked by import-linter, ``pyproject.toml``).

* ``schema``: the store's collections, document shapes, indexes and the reason kinds with their
  texts; ``accounts``: user tokens and their hashes; ``titles``: title folding for search;
* ``live_model`` and ``scoring``: the published live model's arrays and the request-time maths
  (the top-N list kernels and the rating model's fold-in), which the batch lists use too, so
  both sides rank a user's movies with the same code;
* ``clusters``: putting a genre profile into a published cluster; ``arrays`` and ``topk``: the
  id lookups and row-wise top-k every list is cut with;
* ``errors``: what a store that does not answer looks like; ``embedded``: the development store.
"""
