"""Stage 3, the models: user clusters (``clustering``), the rating model (``rating``, over ``mf``'s
biases and factorisation), the top-N model (``topn``, EASE) and similar movies (``similarity``)."""
