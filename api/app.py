"""``create_app``: the Bottle application, built per call (Bottle's "Structuring Applications").

Every response is JSON with ``application/json; charset=utf-8`` (``/metrics`` and ``/docs``
excepted), and every error has one shape, ``{"error": {"code": ..., "message": ...}}``:
handler errors are turned into responses by the route wrapper, and Bottle's own errors (unknown
route, wrong method, anything unexpected) by error handlers that return JSON themselves, since
error handlers bypass plugins.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import bottle
from pymongo.database import Database
from pymongo.errors import PyMongoError

from api.http.auth import FailureLimiter, authenticate
from api.http.body import read_json
from api.http.endpoint import JSON_TYPE, SERVED_FROM, Context, Endpoint, Reply
from api.http.errors import ApiError, NotFound, StoreUnavailable, error_body
from api.http.openapi import build_spec
from api.http.params import parse_request
from api.http.prometheus import Metrics
from api.routes.reads import ENDPOINTS
from api.settings import Settings
from api.store.availability import not_answering
from api.store.serving import ServingStore

log = logging.getLogger("api")

UNMATCHED_ROUTE = "<unmatched>"
_T0 = "movietime.t0"


def create_app(
    settings: Settings, db_factory: Callable[[], Database] | None = None
) -> bottle.Bottle:
    """The API for ``settings``. No connection is made here: the store client is created on
    the first request, in the process that serves it (after gunicorn's fork)."""
    app = bottle.Bottle()
    app.config["catchall"] = True  # unexpected exceptions become a JSON 500, never a traceback
    app.config["json.disable"] = True  # handlers encode JSON themselves
    metrics = Metrics()
    store = ServingStore(settings, db_factory, event_listeners=(metrics.listener(),))
    store.availability.on_change = lambda answering: metrics.store_answering.set(int(answering))
    store.on_rescore = metrics.observe_rescore
    spec = functools.cache(lambda: build_spec(ENDPOINTS))
    app_info = {
        "settings": settings,
        "metrics": metrics,
        "spec": spec,
        "store": store,
        "auth_limiter": FailureLimiter(settings.auth_max_failures, settings.auth_window_s),
    }
    app.config["movietime.store"] = store  # e.g. to close its client when done (tests)

    for endpoint in ENDPOINTS:
        app.route(
            endpoint.path,
            method=endpoint.method,
            callback=_callback(endpoint, store, app_info),
            name=endpoint.operation_id,
        )

    def before_request() -> None:
        bottle.request.environ[_T0] = time.perf_counter()
        _require_utf8_path(bottle.request.environ)
        if bottle.request.method == "OPTIONS" and bottle.request.headers.get(
            "Access-Control-Request-Method"
        ):
            raise _preflight(app, settings, bottle.request)

    def after_request() -> None:
        environ = bottle.request.environ
        route = environ.get("bottle.route")
        rule = route.rule if route is not None else UNMATCHED_ROUTE
        elapsed = time.perf_counter() - environ.get(_T0, time.perf_counter())
        metrics.observe(
            rule, environ.get("REQUEST_METHOD", "?"), bottle.response.status_code, elapsed
        )
        _cors(settings, bottle.request, bottle.response)
        bottle.response.set_header("X-Content-Type-Options", "nosniff")

    app.add_hook("before_request", before_request)
    app.add_hook("after_request", after_request)

    def on_error(err: bottle.HTTPError) -> bytes:
        status = err.status_code
        if status == 404:
            path = bottle.request.environ.get("PATH_INFO", "")
            body = error_body(
                "not_found", f"no endpoint at {path[:200]!r}; see /docs for the endpoints"
            )
        elif status == 405:
            allowed = bottle.response.headers.get("Allow", "GET")
            body = error_body(
                "method_not_allowed",
                f"method {bottle.request.method} is not allowed here; use {allowed}",
            )
        elif 400 <= status < 500:
            body = error_body("bad_request", f"bad request ({err.status_line})")
        else:  # a bug: details go to the log (Bottle already wrote the traceback to wsgi.errors)
            bottle.response.status = 500
            body = error_body("internal_error", "internal error; it has been logged")
        bottle.response.content_type = JSON_TYPE
        return encode_json(body)

    for status in (400, 404, 405, 413, 414, 500):
        app.error_handler[status] = on_error
    app.default_error_handler = on_error  # any other status Bottle raises
    return app


def _callback(endpoint: Endpoint, store: ServingStore, app_info: dict) -> Callable[..., bytes]:
    def callback(**path_args: str) -> bytes:
        response = bottle.response
        result = _answer(endpoint, store, app_info, path_args)
        response.status = result.status
        response.content_type = result.content_type
        for name, value in result.headers.items():
            response.set_header(name, value)
        body = result.body
        if isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode("utf-8")
        return encode_json(body)

    callback.__name__ = endpoint.operation_id
    return callback


def _answer(endpoint: Endpoint, store: ServingStore, app_info: dict, path_args: dict) -> Reply:
    """The endpoint's reply. Each store call has a deadline (``Settings.store_deadline_ms``, the
    client's ``timeoutMS``); the first that misses it marks the store not answering, and from then
    on every store call of this worker fails at once (``api.store.availability``), so a request waits
    for a hanging store at most once. A read that found the store not answering is answered again
    at once from what this process holds; what comes from memory says so in ``Served-From``."""
    settings: Settings = app_info["settings"]
    try:
        environ = bottle.request.environ
        params = parse_request(endpoint.params, path_args, environ.get("QUERY_STRING", ""), environ)
        if endpoint.body is not None:  # size and syntax first: a 413 needs no store read
            params["body"] = endpoint.body.parse(read_json(environ, settings.max_body_bytes))
    except ApiError as exc:
        return Reply(exc.body(), status=exc.status, headers=exc.headers)
    reply = _attempt(endpoint, store, app_info, params)
    if reply is None and not endpoint.writes:
        with store.memory_only():
            reply = _attempt(endpoint, store, app_info, params)
    if reply is None:
        err = StoreUnavailable()
        reply = Reply(err.body(), status=err.status, headers=err.headers)
    return reply


def _attempt(endpoint: Endpoint, store: ServingStore, app_info: dict, params: dict) -> Reply | None:
    """One try at the endpoint; None when the store did not answer in time (then it is marked down)."""
    ctx = Context(store, app_info)
    try:
        if endpoint.auth != "none":
            owner = params.get("id") if endpoint.auth == "user" else None
            params = {
                **params,
                "caller": authenticate(
                    store.db(), bottle.request.environ, app_info["auth_limiter"], owner
                ),
            }
        result = _run(endpoint, ctx, params)
    except ApiError as exc:
        return Reply(exc.body(), status=exc.status, headers=exc.headers)
    except PyMongoError as exc:
        if not_answering(exc):
            store.mark_down(exc)
            log.warning("%s: the store did not answer: %s", endpoint.path, str(exc)[:200])
            return None
        log.warning("%s: store error: %s", endpoint.path, str(exc)[:200])
        err = StoreUnavailable("the data store failed to answer the read; try again shortly")
        return Reply(err.body(), status=err.status, headers=err.headers)
    except Exception:  # a bug: log it, answer a JSON 500 without details
        log.exception("unexpected error in %s", endpoint.path)
        return Reply(error_body("internal_error", "internal error; it has been logged"), status=500)
    if not isinstance(result, Reply):
        result = Reply(result, status=endpoint.status)
    if ctx.from_memory:
        result.headers[SERVED_FROM] = "memory"
    return result


def _run(endpoint: Endpoint, ctx: Context, params: dict) -> Any:
    """Call the handler with one pointer for the whole request. A 404 read through a cached
    pointer is retried once with a fresh pointer if a new version was published meanwhile."""
    store = ctx.store
    try:
        return endpoint.handler(ctx, **params)
    except NotFound:
        if not ctx.resolved or store.down:
            raise
        fresh = store.pointer(fresh=True)
        if fresh["version"] == ctx.pointer["version"]:
            raise
        return endpoint.handler(Context(store, ctx.app_info, fresh), **params)


def _require_utf8_path(environ: dict) -> None:
    """A 400 for a path that is not UTF-8 (Bottle drops the bad bytes: /user/1%FF/rated would
    be user 1's)."""
    raw = environ.get("bottle.raw_path", "")
    try:
        raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        body = encode_json(error_body("bad_request", "the path is not valid UTF-8"))
        raise bottle.HTTPResponse(body, status=400, headers={"Content-Type": JSON_TYPE}) from None


def _preflight(
    app: bottle.Bottle, settings: Settings, request: bottle.LocalRequest
) -> bottle.HTTPResponse:
    """A CORS preflight (OPTIONS with Access-Control-Request-Method): 204 with the CORS headers
    when the origin is allowed and the path serves that method; a JSON 403 otherwise. Only the
    configured origins (``API_CORS_ORIGINS``) are ever allowed, and credentials (cookies) never:
    the API authenticates with bearer tokens, which the page sends itself."""
    origin = request.headers.get("Origin") or ""
    method = request.headers.get("Access-Control-Request-Method", "").upper()[:10]
    allowed = "*" in settings.cors_origins or origin in settings.cors_origins
    try:
        app.router.match({**request.environ, "REQUEST_METHOD": method})
        serves = True
    except bottle.HTTPError:
        serves = False
    if not (origin and allowed and serves):
        why = (
            "this origin is not allowed"
            if not (origin and allowed)
            else f"{method} is not served here"
        )
        body = encode_json(error_body("forbidden", f"CORS preflight refused: {why}"))
        return bottle.HTTPResponse(
            body, status=403, headers={"Content-Type": JSON_TYPE, "Vary": "Origin"}
        )
    headers = {
        "Access-Control-Allow-Origin": "*" if "*" in settings.cors_origins else origin,
        "Access-Control-Allow-Methods": method,
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }
    return bottle.HTTPResponse(b"", status=204, headers=headers)


def _cors(settings: Settings, request: bottle.LocalRequest, response: bottle.LocalResponse) -> None:
    if not settings.cors_origins:
        return
    origin = request.headers.get("Origin")
    if not origin:
        return
    if "*" in settings.cors_origins:
        response.set_header("Access-Control-Allow-Origin", "*")
    elif origin in settings.cors_origins:
        response.set_header("Access-Control-Allow-Origin", origin)
        response.add_header("Vary", "Origin")


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity become null, datetimes ISO 8601 UTC."""
    try:
        text = json.dumps(
            obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default
        )
    except ValueError:  # a NaN somewhere in stored data
        text = json.dumps(
            _finite(obj),
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
            default=_default,
        )
    return text.encode("utf-8")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if hasattr(value, "tolist"):  # numpy scalars/arrays
        return value.tolist()
    return str(value)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
