"""The API's gunicorn worker: gunicorn's sync worker with two changes.

* A request must arrive whole, headers and body, within ``READ_SECONDS`` (at most half of
  gunicorn's ``timeout``): a client that stops sending (a Content-Length it never fills, headers
  it never ends: a slowloris) gets the API's JSON 408 and the worker is free again. Without it the
  sync worker waits on the socket until gunicorn kills it for its timeout and answers its own
  HTML 500.
* Its answer to a request too large to parse (a request line over ``limit_request_line``, as an
  ``exclude=`` of thousands of ids makes; too many or too long header lines) is the API's JSON
  error, a 400, instead of an HTML page.

Every other error is gunicorn's own (``api/gunicorn_conf.py`` names this class).
"""

from __future__ import annotations

import json
import time

from gunicorn import util
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.sync import SyncWorker

from api.http.errors import RequestTimeout, error_body
from api.http.params import MAX_EXCLUDE

READ_SECONDS = 10.0
"""The longest a request may take to arrive (headers and body); the API's bodies are at most 64 KiB."""


def error_answer(exc: Exception, limit: int) -> bytes | None:
    """The whole HTTP answer to ``exc`` when it is a request too large to read or one that did not
    arrive in time, else None."""
    if isinstance(exc, RequestTimeout):
        status, code, message = "408 Request Timeout", exc.code, exc.message
    elif isinstance(exc, LimitRequestLine):
        status, code = "400 Bad Request", "bad_request"
        message = (
            f"the request line is longer than {limit:,} bytes: shorten the query "
            f"(exclude takes at most {MAX_EXCLUDE} movie ids)"
        )
    elif isinstance(exc, LimitRequestHeaders):
        status, code = "400 Bad Request", "bad_request"
        message = f"the request's headers are too large ({exc})"
    else:
        return None
    body = json.dumps(error_body(code, message)).encode()
    head = (
        f"HTTP/1.1 {status}\r\nConnection: close\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ReadDeadline:
    """A client socket whose reads of the request end at a deadline, ``seconds`` from now: a read
    past it raises :class:`RequestTimeout` (an ``ApiError``, not an ``OSError``, so that gunicorn
    hands it to ``handle_error`` and the app answers it as JSON). Reads once the answer has
    started or the socket is shut down (gunicorn's graceful close) are the socket's own, as is
    everything else."""

    def __init__(self, sock, seconds: float):
        self._sock = sock
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds
        self._answering = False

    def recv(self, size: int, *flags):
        if self._answering:
            return self._sock.recv(size, *flags)
        remaining = self._deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            self._sock.settimeout(remaining)
            return self._sock.recv(size, *flags)
        except TimeoutError:
            raise RequestTimeout(
                f"the request did not arrive within {self._seconds:g} s; send it whole"
            ) from None
        finally:
            self._sock.settimeout(None)

    def sendall(self, data, *flags):
        self._answering = True
        return self._sock.sendall(data, *flags)

    def sendfile(self, *args, **kwargs):
        self._answering = True
        return self._sock.sendfile(*args, **kwargs)

    def shutdown(self, how):  # gunicorn's graceful close, answered or not
        self._answering = True
        return self._sock.shutdown(how)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class JsonErrorWorker(SyncWorker):
    def handle(self, listener, client, addr):
        if not self.cfg.is_ssl:  # (an SSL socket is wrapped by gunicorn itself)
            timeout = self.cfg.timeout  # the arbiter kills a worker silent this long (0: never)
            client = ReadDeadline(
                client, min(READ_SECONDS, timeout / 2) if timeout > 0 else READ_SECONDS
            )
        return super().handle(listener, client, addr)

    def handle_error(self, req, client, addr, exc):
        answer = error_answer(exc, self.cfg.limit_request_line)
        if answer is None:
            return super().handle_error(req, client, addr, exc)
        self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, answer)
        except OSError:
            self.log.debug("Failed to send error message.")
