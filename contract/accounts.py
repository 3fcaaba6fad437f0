"""User tokens: made here, checked by the API (``api.http.auth``), issued to data-set users by an
operator (``python -m pipeline token <userId>``).

A token is ``mt_<userId>_<43 url-safe characters>`` (256 random bits from ``secrets``). Only its
SHA-256 is stored (``accounts.token_sha256``): tokens are high-entropy random strings, so a fast
hash is enough (a slow password hash guards guessable secrets), and a leaked ``accounts``
collection gives no usable token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from contract import schema

TOKEN_RE = re.compile(r"mt_([1-9][0-9]{0,18})_([A-Za-z0-9_-]{43})")


def new_token(user_id: int) -> str:
    return f"mt_{int(user_id)}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def account_doc(user_id: int, token: str, origin: str) -> dict[str, Any]:
    return {
        "_id": int(user_id),
        "token_sha256": token_hash(token),
        "origin": origin,
        "created_at": datetime.now(UTC),
    }


def issue_token(db, user_id: int, origin: str = "issued") -> str:
    """Create or replace ``user_id``'s token; returns the new token (shown once, stored hashed).
    The previous token, if any, stops working at once."""
    token = new_token(user_id)
    db[schema.ACCOUNTS].replace_one(
        {"_id": int(user_id)}, account_doc(user_id, token, origin), upsert=True
    )
    return token
