"""The store as the API sees it: the served version and the users' live state (``serving``),
whether the store answers (``availability``), and which users have live state (``live_index``)."""
