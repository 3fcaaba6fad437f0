"""What a store that does not answer looks like, to the pipeline's load and the API alike."""

from __future__ import annotations

from pymongo.errors import ConnectionFailure, PyMongoError


def not_answering(exc: BaseException) -> bool:
    """True for the errors of a store that is down, unreachable or too slow (a deadline or socket
    timeout that passed), False for one that answered with an error."""
    return isinstance(exc, ConnectionFailure) or (isinstance(exc, PyMongoError) and exc.timeout)
