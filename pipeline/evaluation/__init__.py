"""Stage 4, the evaluation against baselines on held-out ratings (``holdout``, ``metrics``), and
the ``python -m pipeline evaluate`` command that writes a split's lists for the peer harness
(``command``)."""
