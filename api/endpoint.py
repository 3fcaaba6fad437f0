"""The declaration of one API endpoint: path, typed parameters, handler, documented responses.

The app registers its routes from these declarations and the OpenAPI spec is generated from
the same objects, so the two cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from api.params import Param
from api.store import ServingStore

JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class Reply:
    """A handler result other than "200 with this JSON object"."""

    body: Any  # dict/list -> JSON; str/bytes -> as is with content_type
    status: int = 200
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Context:
    """What a handler works with during one request."""

    store: ServingStore
    app_info: Mapping[str, Any]  # spec(), metrics, settings: shared by the app's endpoints
    _pointer: dict | None = None

    @property
    def pointer(self) -> dict:
        """The serving pointer, resolved once for the whole request."""
        if self._pointer is None:
            self._pointer = self.store.pointer()
        return self._pointer

    @property
    def resolved(self) -> bool:
        return self._pointer is not None


@dataclass(frozen=True)
class Endpoint:
    path: str  # Bottle rule with plain wildcards, e.g. "/user/<id>/recommendation"
    handler: Callable[..., Any]  # handler(ctx, **params) -> dict | Reply
    summary: str
    description: str = ""
    params: tuple[Param, ...] = ()
    response: str | None = None  # schema name of the 200 body (JSON); None: see content
    content: str = "application/json"  # media type of the 200 body
    errors: tuple[int, ...] = (400, 503)  # documented error statuses besides 404/405/500
    tag: str = "general"
    method: str = "GET"

    def __post_init__(self) -> None:
        path_names = set(re.findall(r"<([^>:]+)>", self.path))
        declared = {p.name for p in self.params if p.where == "path"}
        if path_names != declared:
            raise ValueError(f"{self.path}: path parameters {path_names} != declared {declared}")

    @property
    def openapi_path(self) -> str:
        return re.sub(r"<([^>:]+)>", r"{\1}", self.path)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__
