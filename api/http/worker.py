"""The API's gunicorn worker: gunicorn's sync worker, whose answer to a request too large to
parse (a request line over ``limit_request_line``, as an ``exclude=`` of thousands of ids makes;
too many or too long header lines) is the API's JSON error, a 400, instead of an HTML page.
Every other error is gunicorn's own (``api/gunicorn_conf.py`` names this class)."""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.sync import SyncWorker

from api.http.errors import error_body
from api.http.params import MAX_EXCLUDE


def too_large(exc: Exception, limit: int) -> bytes | None:
    """The whole HTTP answer to ``exc`` when it is a request too large to read, else None."""
    if isinstance(exc, LimitRequestLine):
        message = (
            f"the request line is longer than {limit:,} bytes: shorten the query "
            f"(exclude takes at most {MAX_EXCLUDE} movie ids)"
        )
    elif isinstance(exc, LimitRequestHeaders):
        message = f"the request's headers are too large ({exc})"
    else:
        return None
    body = json.dumps(error_body("bad_request", message)).encode()
    head = (
        "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class JsonErrorWorker(SyncWorker):
    def handle_error(self, req, client, addr, exc):
        answer = too_large(exc, self.cfg.limit_request_line)
        if answer is None:
            return super().handle_error(req, client, addr, exc)
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, answer)
        except OSError:
            self.log.debug("Failed to send error message.")
