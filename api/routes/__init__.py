"""The endpoints: each module declares its handlers with their parameters and documented
responses (``reads``: users' lists and history, movies, clusters, health, metrics and docs;
``writes``: onboarding, ratings and feedback; ``lists``: shareable lists; ``search``: title
search). ``reads.ENDPOINTS`` gathers them all."""
