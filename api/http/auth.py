"""Bearer tokens: who may write as a user (tokens are made in ``contract.accounts``).

The user id in the token picks the account; the SHA-256 of the given token is compared with the
stored one with ``hmac.compare_digest``. Tokens are never logged: error messages never echo them.

Failed authentications are rate-limited per client address (``FailureLimiter``): after
``max_failures`` within ``window_s`` seconds, further attempts get 429 until the window passes.
The limiter is per worker process.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from api.http.errors import Forbidden, TooManyRequests, Unauthorized
from contract import schema
from contract.accounts import TOKEN_RE, account_doc, issue_token, new_token, token_hash

__all__ = [
    "FailureLimiter",
    "account_doc",
    "authenticate",
    "issue_token",
    "new_token",
    "token_hash",
]

_BEARER = re.compile(r"Bearer[ ]+(\S+)[ ]*", re.IGNORECASE)


@dataclass
class FailureLimiter:
    max_failures: int = 10
    window_s: float = 60.0
    max_clients: int = 10_000
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque] = OrderedDict()

    def check(self, client: str) -> None:
        with self._lock:
            recent = self._recent(client)
            if recent is not None and len(recent) >= self.max_failures:
                wait = self.window_s - (self.clock() - recent[0])
                raise TooManyRequests(
                    "too many failed authentications from this address; try again later", wait
                )

    def failed(self, client: str) -> None:
        with self._lock:
            recent = self._recent(client)
            if recent is None:
                recent = self._failures[client] = deque()
                while len(self._failures) > self.max_clients:
                    self._failures.popitem(last=False)
            recent.append(self.clock())

    def _recent(self, client: str) -> deque | None:
        recent = self._failures.get(client)
        if recent is not None:
            cutoff = self.clock() - self.window_s
            while recent and recent[0] < cutoff:
                recent.popleft()
            self._failures.move_to_end(client)
        return recent


def authenticate(
    db, environ: Mapping[str, Any], limiter: FailureLimiter, user_id: int | None = None
) -> int:
    """The user id the request's bearer token belongs to. 401 without a valid token, 403 when
    ``user_id`` is given and the token is another user's, 429 after too many failures."""
    client = str(environ.get("REMOTE_ADDR") or "?")
    limiter.check(client)
    header = str(environ.get("HTTP_AUTHORIZATION") or "")
    if not header:
        raise Unauthorized("this endpoint needs the user's token: Authorization: Bearer <token>")
    match = _BEARER.fullmatch(header)
    token_match = TOKEN_RE.fullmatch(match.group(1)) if match else None
    if token_match is None:
        limiter.failed(client)
        raise Unauthorized("malformed Authorization header: expected 'Bearer mt_<userId>_<secret>'")
    owner = int(token_match.group(1))
    account = db[schema.ACCOUNTS].find_one({"_id": owner}, {"token_sha256": 1})
    expected = (account or {}).get("token_sha256")
    given = token_hash(token_match.group(0))
    if not isinstance(expected, str) or not hmac.compare_digest(given, expected):
        limiter.failed(client)
        raise Unauthorized("invalid or revoked token")
    if user_id is not None and owner != user_id:
        raise Forbidden(f"this token belongs to another user; it may not change user {user_id}")
    return owner
