"""HTTP plumbing shared by every endpoint: declarations (``endpoint``), typed parameters and
bodies (``params``, ``body``), errors, authentication, response views and schemas, the OpenAPI
spec and its ``/docs`` page, and Prometheus metrics."""
