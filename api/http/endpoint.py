"""The declaration of one API endpoint: path, typed parameters, handler, documented responses.

The app registers its routes from these declarations and the OpenAPI spec is generated from
the same objects, so the two cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from api.http.body import Body
from api.http.errors import BadRequest
from api.http.params import Param
from api.store.serving import ServingStore

JSON_TYPE = "application/json; charset=utf-8"
#: Response header of an answer made from what the worker holds while the store was not answering.
SERVED_FROM = "Served-From"


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
    from_memory: bool = False  # the pointer is the last one read, the store not answering

    @property
    def pointer(self) -> dict:
        """The serving pointer, resolved once for the whole request."""
        if self._pointer is None:
            self.from_memory = self.store.down
            self._pointer = self.store.pointer()
        return self._pointer

    @property
    def resolved(self) -> bool:
        return self._pointer is not None

    def genre(self, raw: str) -> str:
        """The ``genre`` query parameter as the data set names it; 400 when it names none."""
        genres = self.store.model(self.pointer).genres
        name = self.store.model(self.pointer).genre(raw)
        if name is None:
            raise BadRequest(
                f"query parameter 'genre' must be one of the data set's genres ({', '.join(genres)}); "
                f"got {raw[:40]!r}"
            )
        return name


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
    body: Body | None = None  # a JSON request body, passed to the handler as ``body``
    auth: str = "none"  # "none"; "user": the token of the path's user; "token": any user's
    status: int = 200  # status of a success

    @property
    def writes(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")

    def __post_init__(self) -> None:
        path_names = set(re.findall(r"<([^>:]+)>", self.path))
        declared = {p.name for p in self.params if p.where == "path"}
        if path_names != declared:
            raise ValueError(f"{self.path}: path parameters {path_names} != declared {declared}")
        if self.auth not in ("none", "user", "token"):
            raise ValueError(f"{self.path}: auth must be none, user or token")
        if self.auth == "user" and "id" not in path_names:
            raise ValueError(f"{self.path}: auth 'user' needs an <id> path parameter")

    @property
    def openapi_path(self) -> str:
        return re.sub(r"<([^>:]+)>", r"{\1}", self.path)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__
