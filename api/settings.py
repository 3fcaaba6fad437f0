"""The API's configuration: one frozen dataclass, read from the environment only by the entry points."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from api.store.live_index import valid_capacity

DEFAULT_DATABASE = "movietime"


@dataclass(frozen=True)
class Settings:
    """Everything the app needs; ``create_app(Settings(...))`` never looks at the environment.

    ``mongodb_url`` may be None only when a ``db_factory`` is passed to ``create_app`` (tests);
    the entry points (``api.wsgi``, ``python -m api``) fill it in, starting the embedded store
    when ``MONGODB_URL`` is unset.
    """

    mongodb_url: str | None = None
    database: str | None = None  # None: the database of the URL's path, else "movietime"
    server_selection_timeout_ms: int = 1000  # store down -> 503 after about this long
    connect_timeout_ms: int = 1000
    socket_timeout_ms: int = 5000  # a single call outside any deadline that hangs this long fails
    # each store call (the client's timeoutMS); the first that misses it marks the store not
    # answering for the worker (api.store.availability): a request waits for a hanging store at most once
    store_deadline_ms: int = 800
    store_probe_s: float = 0.25  # while the store is not answering, ping it this often
    # deadline of the one-off read of a cluster's members (< gunicorn's 30 s)
    scan_timeout_s: float = 25.0
    max_pool_size: int = 16  # connections per worker process
    pointer_cache_s: float = 2.0  # re-read the serving pointer at most this often (<= 5 s)
    movie_cache_size: int = 50_000  # movie details kept per process (per model version)
    cors_origins: tuple[str, ...] = ()  # allowed browser origins; ("*",) allows any
    app_name: str = "movietime-api"  # shown in the server's connection log
    max_body_bytes: int = 64 * 1024  # larger request bodies get 413
    auth_max_failures: int = 10  # failed authentications per client address and window -> 429
    auth_window_s: float = 60.0
    # users' lists (precomputed or re-scored) kept per process and version
    response_cache_size: int = 4096
    # which users have live state, shared by the API processes of this host (api.store.live_index);
    # off: every recommendation request reads the user's profile from the store (several API hosts)
    live_index: bool = True
    live_index_dir: str | None = None  # None: api.store.live_index.default_directory()
    live_index_capacity: int = 1 << 20  # slots (a power of two; at most half are used)

    def __post_init__(self) -> None:
        if self.server_selection_timeout_ms < 1 or self.connect_timeout_ms < 1:
            raise ValueError("store timeouts must be positive")
        if self.socket_timeout_ms < 1 or self.max_pool_size < 1 or self.scan_timeout_s <= 0:
            raise ValueError("socket_timeout_ms, scan_timeout_s and max_pool_size must be positive")
        if not 0 <= self.pointer_cache_s <= 5:
            # the store keeps a superseded version 10 s after the flip: a longer cache could
            # read collections that are being dropped
            raise ValueError("pointer_cache_s must be between 0 and 5 seconds")
        if not 1 <= self.store_deadline_ms <= 25_000:
            raise ValueError(
                "store_deadline_ms must be between 1 and 25,000 (gunicorn's timeout is 30 s)"
            )
        if not 0.01 <= self.store_probe_s <= 5:
            raise ValueError("store_probe_s must be between 0.01 and 5 seconds")
        if self.movie_cache_size < 0:
            raise ValueError("movie_cache_size must be >= 0")
        if not valid_capacity(self.live_index_capacity):
            raise ValueError("live_index_capacity must be a power of two")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Settings from environment variables (the only place the API reads them).

        ``MONGODB_URL``, ``MOVIETIME_DATABASE``, ``API_STORE_TIMEOUT_MS`` (selection and connect),
        ``API_SOCKET_TIMEOUT_MS``, ``API_STORE_DEADLINE_MS``, ``API_POOL_SIZE``, ``API_POINTER_CACHE_S``,
        ``API_STORE_PROBE_S``,
        ``API_MOVIE_CACHE_SIZE``, ``API_CORS_ORIGINS`` (comma-separated), ``API_LIVE_INDEX``
        (``on``/``off``), ``API_LIVE_INDEX_DIR``, ``API_LIVE_INDEX_CAPACITY``.
        """
        kw: dict = {}
        url = env.get("MONGODB_URL", "").strip()
        if url:
            kw["mongodb_url"] = url
        database = env.get("MOVIETIME_DATABASE", "").strip()
        if database:
            kw["database"] = database
        ints = {
            "API_STORE_TIMEOUT_MS": ("server_selection_timeout_ms", "connect_timeout_ms"),
            "API_SOCKET_TIMEOUT_MS": ("socket_timeout_ms",),
            "API_STORE_DEADLINE_MS": ("store_deadline_ms",),
            "API_POOL_SIZE": ("max_pool_size",),
            "API_MOVIE_CACHE_SIZE": ("movie_cache_size",),
            "API_LIVE_INDEX_CAPACITY": ("live_index_capacity",),
        }
        for var, names in ints.items():
            raw = env.get(var, "").strip()
            if raw:
                value = _parse(var, raw, int)
                kw.update(dict.fromkeys(names, value))
        for var, name in (
            ("API_POINTER_CACHE_S", "pointer_cache_s"),
            ("API_STORE_PROBE_S", "store_probe_s"),
        ):
            raw = env.get(var, "").strip()
            if raw:
                kw[name] = _parse(var, raw, float)
        raw = env.get("API_LIVE_INDEX", "").strip().lower()
        if raw:
            if raw not in ("on", "off"):
                raise ValueError(f"API_LIVE_INDEX={raw!r} must be on or off")
            kw["live_index"] = raw == "on"
        raw = env.get("API_LIVE_INDEX_DIR", "").strip()
        if raw:
            kw["live_index_dir"] = raw
        raw = env.get("API_CORS_ORIGINS", "").strip()
        if raw:
            kw["cors_origins"] = tuple(o.strip() for o in raw.split(",") if o.strip())
        return cls(**kw)

    @property
    def store_deadline_s(self) -> float:
        return self.store_deadline_ms / 1000

    def with_url(self, url: str) -> Settings:
        return replace(self, mongodb_url=url)


def _parse(var: str, raw: str, kind: type):
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
