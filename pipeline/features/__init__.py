"""Stage 2, the features, from training ratings only: user and movie tables and genre profiles
(``tables``), and the sparse user x movie rating matrix the collaborative models share
(``matrix``)."""
