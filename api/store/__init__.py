"""The store as the API sees it: the connection, the pointer and the served version's reads
(``serving``), what a worker keeps of each version (``cache``), the users' live state
(``profiles``, ``live_index``), and whether the store answers (``availability``)."""
