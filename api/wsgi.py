"""WSGI entry point for gunicorn: ``gunicorn "api.wsgi:create()"`` (gunicorn's factory syntax).

``create()`` reads the environment (via ``Settings.from_env``) and, when ``MONGODB_URL`` is not
set, finds or starts the embedded SecantusDB server of ``var/mongo`` (like ``python -m pipeline``).
It makes no store connection: each worker connects on its first request, after the fork.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import bottle

from api.app import create_app
from api.settings import Settings
from contract.embedded import EmbeddedConfig, resolve_url

log = logging.getLogger("api")


def resolve_settings(env: Mapping[str, str], embedded: EmbeddedConfig | None = None) -> Settings:
    """Settings from ``env``; the embedded store's URL when ``MONGODB_URL`` is unset."""
    settings = Settings.from_env(env)
    if not settings.mongodb_url:
        url, _ = resolve_url(env, embedded or EmbeddedConfig())
        log.warning("MONGODB_URL is not set: using the embedded store at %s", url)
        settings = settings.with_url(url)
    return settings


def create() -> bottle.Bottle:
    return create_app(resolve_settings(os.environ))
