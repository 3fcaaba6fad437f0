"""Shareable movie lists: ``POST /lists``, ``GET/PUT/DELETE /lists/<slug>``.

A list is one document of the online ``lists`` collection (``contract.schema.LISTS``)::

    {_id: <slug>, userId: <owner>, title, description (optional), movieIds: [...],
     created_at, updated_at}

* **Slugs** are ``secrets.token_urlsafe(16)``: 22 URL-safe characters, 128 random bits, so a
  list can only be found through its link. A path that is not exactly such a string is a 400
  before anything reads the store, and the slug is only ever used as an ``_id`` value.
* **Writes** need a bearer token (``api.http.auth``). Anyone with a token may create a list; only its
  owner may replace or delete it (403 for anyone else). The owner never changes, so checking it
  with one ``_id`` read and then writing by ``_id`` is safe: at worst the list was deleted in
  between, and the write answers 404.
* **Movies** must be in the served catalogue when the list is created or replaced (404 names the
  first unknown one). A list keeps its ``movieIds`` across pipeline runs (the ``lists`` collection
  is online data: runs, rollbacks and cleanups never touch it); a movie a later version no longer
  has is shown with its id and null details instead of failing the list.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from api.http.body import Body, IntField, ListField, StringField
from api.http.endpoint import Context, Endpoint, Reply
from api.http.errors import Forbidden, NotFound
from api.http.params import Param
from api.http.views import movie_summary
from api.services.live import require_movies
from contract import schema

SLUG_BYTES = 16  # 128 bits
SLUG_RE = re.compile(r"[A-Za-z0-9_-]{22}")  # what secrets.token_urlsafe(SLUG_BYTES) returns
MAX_MOVIES = 100
MAX_TITLE = 100
MAX_DESCRIPTION = 1000


@dataclass(frozen=True, kw_only=True)
class SlugParam(Param):
    """A list's slug: exactly 22 URL-safe base64 characters, else a 400."""

    def parse(self, raw: str) -> str:
        if not SLUG_RE.fullmatch(raw):
            raise self._bad("must be a list slug: 22 characters of A-Z, a-z, 0-9, '-' and '_'")
        return raw

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{SLUG_RE.pattern}$"}


@dataclass(frozen=True, kw_only=True)
class ProseField(StringField):
    """A string that may contain line breaks and tabs (other control characters are a 400)."""

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            return super().check(value, where)  # the usual "must be a string" 400
        text = value.replace("\r\n", "\n")
        super().check(text.replace("\n", " ").replace("\t", " "), where)  # same length, same strip
        return text.strip()

    def json_schema(self) -> dict[str, Any]:  # no control characters but tabs and line breaks
        return {**super().json_schema(), "pattern": r"^(?:[^\x00-\x08\x0b-\x1f]|\r\n)*$"}


SLUG = SlugParam(name="slug", where="path", description="the list's slug, from POST /lists")

LIST_INPUT = Body(
    "ListInput",
    (
        StringField(
            name="title",
            required=True,
            min_length=1,
            max_length=MAX_TITLE,
            description=f"1 to {MAX_TITLE} characters (trimmed)",
        ),
        ListField(
            name="movieIds",
            required=True,
            item=IntField(minimum=1, description="a movieId of the served catalogue"),
            min_items=1,
            max_items=MAX_MOVIES,
            unique=True,
            description=f"1 to {MAX_MOVIES} different movies, in the list's order",
        ),
        ProseField(
            name="description",
            min_length=0,
            max_length=MAX_DESCRIPTION,
            description=f"optional, up to {MAX_DESCRIPTION} characters; line breaks allowed",
        ),
    ),
    "A shareable list: its title, movies and an optional description.",
)


# --- handlers --------------------------------------------------------------------------------


def create_list(ctx: Context, body: dict, caller: int) -> Reply:
    require_movies(ctx.store, ctx.pointer, body["movieIds"])
    now = now_ms()
    fields = {"userId": caller, **_fields(body), "created_at": now, "updated_at": now}
    slug = insert_with_slug(ctx.store.online(schema.LISTS), fields)
    url = list_url(slug)
    return Reply({"slug": slug, "url": url}, status=201, headers={"Location": url})


def get_list(ctx: Context, slug: str) -> dict:
    doc = _find(ctx, slug)
    return _view(ctx, doc)


def replace_list(ctx: Context, slug: str, body: dict, caller: int) -> dict:
    doc = _owned(ctx, slug, caller)
    require_movies(ctx.store, ctx.pointer, body["movieIds"])
    fields = {**_fields(body), "updated_at": now_ms()}
    update: dict[str, Any] = {"$set": fields}
    if "description" not in fields:
        update["$unset"] = {"description": ""}
    result = ctx.store.online(schema.LISTS).update_one({"_id": slug}, update)
    if result.matched_count == 0:  # deleted meanwhile
        raise NotFound(f"list {slug} not found")
    kept = {k: doc[k] for k in ("_id", "userId", "created_at") if k in doc}
    return _view(ctx, {**kept, **fields})


def delete_list(ctx: Context, slug: str, caller: int) -> dict:
    _owned(ctx, slug, caller)
    result = ctx.store.online(schema.LISTS).delete_one({"_id": slug})
    if result.deleted_count == 0:  # deleted meanwhile
        raise NotFound(f"list {slug} not found")
    return {"deleted": slug}


def list_url(slug: str) -> str:
    return f"/lists/{slug}"


def insert_with_slug(collection, fields: dict[str, Any]) -> str:
    """Insert ``fields`` under a new random slug as ``_id`` (the online ``lists`` and ``groups``);
    the slug."""
    for _ in range(3):  # a slug collision is a 2^-128 event; retrying costs nothing
        slug = secrets.token_urlsafe(SLUG_BYTES)
        try:
            collection.insert_one({"_id": slug, **fields})
            return slug
        except DuplicateKeyError:
            continue
    raise RuntimeError("could not allocate a slug")  # pragma: no cover - a broken random source


def now_ms() -> datetime:
    """Now, to the millisecond: what the store keeps of a datetime (responses show the same)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _fields(body: dict) -> dict[str, Any]:
    out = {"title": body["title"], "movieIds": [int(m) for m in body["movieIds"]]}
    if body.get("description"):
        out["description"] = body["description"]
    return out


def _find(ctx: Context, slug: str) -> dict:
    doc = ctx.store.online(schema.LISTS).find_one({"_id": slug})
    if doc is None:
        raise NotFound(f"list {slug} not found")
    return doc


def _owned(ctx: Context, slug: str, caller: int) -> dict:
    doc = _find(ctx, slug)
    if int(doc.get("userId", -1)) != caller:
        raise Forbidden(f"list {slug} belongs to another user; only its owner may change it")
    return doc


def _view(ctx: Context, doc: dict) -> dict:
    pointer = ctx.pointer
    ids = [int(m) for m in doc.get("movieIds") or ()]
    details = ctx.store.movie_details(pointer, ids)
    return {
        "slug": doc["_id"],
        "url": list_url(doc["_id"]),
        "title": doc.get("title"),
        "description": doc.get("description"),
        "userId": int(doc["userId"]),
        "created_at": doc.get("created_at"),
        "updated_at": doc.get("updated_at"),
        "model_version": pointer["version"],
        "movies": [movie_summary(mid, details.get(mid)) for mid in ids],
    }


# --- declarations ----------------------------------------------------------------------------

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/lists",
        create_list,
        "Create a shareable list",
        description=(
            "Saves a titled list of movies owned by the token's user and answers with its slug and "
            "URL (also in Location). The slug is 128 random bits: the URL is the only way to find "
            "the list, and anyone who has it can read the list without a token. Every movie must "
            "be in the served catalogue."
        ),
        response="ListCreated",
        errors=(400, 404, 503),
        tag="lists",
        method="POST",
        body=LIST_INPUT,
        auth="token",
        status=201,
    ),
    Endpoint(
        "/lists/<slug>",
        get_list,
        "A shareable list",
        description=(
            "The list with movie details in the list's order; no token needed. A movie the served "
            "version no longer has keeps its movieId with null details."
        ),
        params=(SLUG,),
        response="MovieList",
        errors=(400, 404, 503),
        tag="lists",
    ),
    Endpoint(
        "/lists/<slug>",
        replace_list,
        "Replace a list (owner only)",
        description=(
            "Replaces the list's title, movies and description (a description left out is removed); "
            "the slug stays. Only the list's owner may do this: another user's token is a 403. "
            "Answers with the list as GET shows it."
        ),
        params=(SLUG,),
        response="MovieList",
        errors=(400, 403, 404, 503),
        tag="lists",
        method="PUT",
        body=LIST_INPUT,
        auth="token",
    ),
    Endpoint(
        "/lists/<slug>",
        delete_list,
        "Delete a list (owner only)",
        description="Deletes the list for good; its URL answers 404 afterwards. Owner only (else 403).",
        params=(SLUG,),
        response="ListDeleted",
        errors=(400, 403, 404, 503),
        tag="lists",
        method="DELETE",
        auth="token",
    ),
)
