"""Typed request parameters: every path and query value is parsed into a Python value here,
before any handler or store call, and the same declarations produce the OpenAPI parameters.

Anything malformed, out of range, repeated or unknown is a 400 that names the parameter and
what is allowed; nothing is clamped, and no raw string ever reaches a query as an operator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

from api.http.errors import BadRequest

INT64_MAX = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
_NUMBER = re.compile(r"[-+]?([0-9]{1,20}(\.[0-9]{0,20})?|\.[0-9]{1,20})([eE][-+]?[0-9]{1,3})?")
_ID = re.compile(r"[1-9][0-9]{0,17}")
MAX_QUERY_FIELDS = 20
#: What ``str.strip()`` removes (the characters of ``str.isspace``), as a regex class body.
_BLANK = r"\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def has_control(text: str) -> bool:
    """Any control character (below U+0020), anywhere: what ``text_pattern`` refuses."""
    return any(ord(c) < 32 for c in text)


def text_pattern(min_length: int) -> str:
    """The JSON Schema ``pattern`` of one line of text as ``TextParam`` and the body's string
    fields accept it: no control character (below U+0020) anywhere and, when it may not be
    empty, a character that trimming keeps (so "   " is not a valid value)."""
    if min_length < 1:
        return r"^[^\x00-\x1f]*$"
    return rf"^[^\x00-\x1f]*[^\x00-\x1f{_BLANK}][^\x00-\x1f]*$"


@dataclass(frozen=True, kw_only=True)
class Param:
    """One parameter. ``parse`` turns the raw text into a value or raises BadRequest."""

    name: str
    where: Literal["path", "query", "header"] = "query"
    description: str = ""
    required: bool = False
    default: Any = None
    arg: str = ""  # the handler's keyword argument, when it is not ``name`` (a header's)

    @property
    def keyword(self) -> str:
        return self.arg or self.name

    def parse(self, raw: str) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def openapi(self) -> dict[str, Any]:
        schema = self.json_schema()
        if self.default is not None:
            schema["default"] = self.default
        return {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "description": self.description,
            "schema": schema,
        }

    def _bad(self, what: str) -> BadRequest:
        return BadRequest(f"{self.where} parameter '{self.name}' {what}")


@dataclass(frozen=True, kw_only=True)
class IntParam(Param):
    """A decimal integer in ``[minimum, maximum]``: digits only (no sign, point, exponent)."""

    minimum: int = 0
    maximum: int = INT64_MAX

    def parse(self, raw: str) -> int:
        if not _DIGITS.fullmatch(raw):
            raise self._bad(
                f"must be an integer from {self.minimum} to {self.maximum}, got {_show(raw)}"
            )
        value = int(raw)
        if not self.minimum <= value <= self.maximum:
            raise self._bad(f"must be from {self.minimum} to {self.maximum}, got {value}")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "integer",
            "format": "int64",
            "minimum": self.minimum,
            "maximum": self.maximum,
        }


@dataclass(frozen=True, kw_only=True)
class FractionParam(Param):
    """A decimal number from 0 to 1 ("0.35", "1", ".5", "5e-1"): no "nan" or "inf"."""

    def parse(self, raw: str) -> float:
        if not _NUMBER.fullmatch(raw) or not 0.0 <= float(raw) <= 1.0:
            raise self._bad(f"must be a number from 0 to 1 such as 0.3, got {_show(raw)}")
        return abs(float(raw))  # "-0" is 0

    def json_schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": 0, "maximum": 1}


@dataclass(frozen=True, kw_only=True)
class IdListParam(Param):
    """Up to ``max_items`` positive integer ids (below 10**18, no leading zero) separated by
    commas ("260,2571"), as a frozenset; repeats count once."""

    max_items: int = 100

    def parse(self, raw: str) -> frozenset[int]:
        parts = raw.split(",")
        if len(parts) > self.max_items:
            raise self._bad(f"takes at most {self.max_items} ids, got {len(parts)}")
        if not all(_ID.fullmatch(x) for x in parts):
            raise self._bad(f"must be positive integer ids separated by commas, got {_show(raw)}")
        return frozenset(int(x) for x in parts)

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "string",
            "pattern": rf"^{_ID.pattern}(,{_ID.pattern}){{0,{self.max_items - 1}}}$",
        }


@dataclass(frozen=True, kw_only=True)
class ChoiceParam(Param):
    """One of ``choices`` (matched case-insensitively, returned as listed)."""

    choices: tuple[str, ...] = ()

    def parse(self, raw: str) -> str:
        for choice in self.choices:
            if raw.lower() == choice.lower():
                return choice
        raise self._bad(f"must be one of {', '.join(self.choices)}; got {_show(raw)}")

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True, kw_only=True)
class TextParam(Param):
    """Free text of ``min_length`` to ``max_length`` characters (after trimming spaces)."""

    min_length: int = 1
    max_length: int = 100

    def parse(self, raw: str) -> str:
        if has_control(raw):  # before trimming, as the schema's pattern says: "a\n" too
            raise self._bad("must not contain control characters")
        value = raw.strip()
        if not self.min_length <= len(value) <= self.max_length:
            raise self._bad(
                f"must be {self.min_length} to {self.max_length} characters, got {len(value)}"
            )
        return value

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "string",
            "minLength": self.min_length,
            "maxLength": self.max_length,
            "pattern": text_pattern(self.min_length),
        }


@dataclass(frozen=True, kw_only=True)
class KeyParam(Param):
    """An opaque key such as a UUID: 1 to ``max_length`` letters, digits and ``-_.:``."""

    max_length: int = 64

    @property
    def pattern(self) -> str:
        return f"^[A-Za-z0-9_.:-]{{1,{self.max_length}}}$"

    def parse(self, raw: str) -> str:
        if not re.fullmatch(self.pattern, raw):
            raise self._bad(
                f"must be 1 to {self.max_length} letters, digits or -_.: (a UUID, for example)"
            )
        return raw

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": self.pattern}


IDEMPOTENCY_KEY = KeyParam(
    name="Idempotency-Key",
    where="header",
    arg="idempotency_key",
    description="a new random key (a UUID) per write: a retry with the same key, after a 503 or a lost "
    "answer, is applied once and gets the first answer; a key is kept for the user's next 100 writes",
)


MAX_EXCLUDE = 500  # fits gunicorn's request line (4,094 bytes) with six-digit movie ids


def variety_params() -> tuple[FractionParam, IdListParam]:
    """``diversity`` and ``exclude`` of a list (a user's, a group's)."""
    return (
        FractionParam(
            name="diversity",
            default=0.0,
            description="0 to 1: how much variety (0: the list as ranked; 1: every next movie "
            "as unlike the ones before it in genres as the list allows). Maximal marginal "
            "relevance over genre similarity",
        ),
        IdListParam(
            name="exclude",
            max_items=MAX_EXCLUDE,
            description=f"movie ids to leave out, separated by commas (at most {MAX_EXCLUDE})",
        ),
    )


def user_id(description: str = "MovieLens userId (a positive integer)") -> IntParam:
    return IntParam(name="id", where="path", minimum=1, description=description)


def movie_id(description: str = "MovieLens movieId (a positive integer)") -> IntParam:
    return IntParam(name="id", where="path", minimum=1, description=description)


def cluster_id(name: str = "cluster") -> IntParam:
    return IntParam(name=name, where="path", minimum=0, description="cluster id (0, 1, ...)")


def page_params(default_per_page: int = 20, max_per_page: int = 100) -> tuple[IntParam, IntParam]:
    return (
        IntParam(
            name="page",
            minimum=1,
            maximum=1_000_000,
            default=1,
            description="page number, from 1; a page past the end has no items",
        ),
        IntParam(
            name="per_page",
            minimum=1,
            maximum=max_per_page,
            default=default_per_page,
            description=f"items per page (1 to {max_per_page})",
        ),
    )


def parse_request(
    params: Sequence[Param],
    path_args: Mapping[str, str],
    query_string: str,
    environ: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Typed values for ``params`` from the route's path arguments, the raw query string and the
    request's headers (in the WSGI ``environ``), by their handler keyword.

    Query parameters that are unknown, repeated, or not valid UTF-8 are rejected; so are names
    such as ``q[$ne]``, which some frameworks would turn into nested objects.
    """
    values: dict[str, Any] = {}
    for param in params:
        if param.where == "path":
            values[param.keyword] = param.parse(path_args[param.name])
        elif param.where == "header":
            raw = (environ or {}).get("HTTP_" + param.name.upper().replace("-", "_"))
            if raw is None and param.required:
                raise BadRequest(f"header '{param.name}' is required")
            values[param.keyword] = param.default if raw is None else param.parse(raw)
    query = parse_query_string(query_string)
    known = {p.name: p for p in params if p.where == "query"}
    for name in query:
        if name not in known:
            allowed = ", ".join(known) or "none"
            raise BadRequest(f"unknown query parameter {_show(name)}; allowed: {allowed}")
    for name, param in known.items():
        raws = query.get(name)
        if not raws:
            if param.required:
                raise BadRequest(f"query parameter '{name}' is required")
            values[param.keyword] = param.default
        elif len(raws) > 1:
            raise BadRequest(f"query parameter '{name}' is given {len(raws)} times; give it once")
        else:
            values[param.keyword] = param.parse(raws[0])
    return values


def parse_query_string(query_string: str) -> dict[str, list[str]]:
    try:
        pairs = parse_qsl(
            query_string,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8") from None
    except ValueError:
        raise BadRequest(f"too many query parameters (at most {MAX_QUERY_FIELDS})") from None
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        query.setdefault(name, []).append(value)
    return query


def _show(raw: str, limit: int = 40) -> str:
    """The offending value for an error message: quoted and cut short."""
    return repr(raw if len(raw) <= limit else raw[:limit] + "...")
