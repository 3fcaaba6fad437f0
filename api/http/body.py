"""JSON request bodies: read with a size limit, decoded strictly, checked against a typed
declaration that also produces the OpenAPI ``requestBody`` schema.

* More than ``max_bytes`` (by ``Content-Length``, or by what actually arrives) is a 413.
* A content type other than ``application/json`` is a 415.
* Malformed JSON, a duplicated key, ``NaN``/``Infinity``, or any object key that starts with ``$``
  or contains a NUL or ``.`` anywhere in the document is a 400: no client text ever reaches the
  store as an operator or a field path.
* Every field is typed: an object or array where a number or string is expected is a 400 (so
  ``{"movieId": {"$gt": 0}}`` fails as "must be an integer"); unknown fields are a 400; values
  out of range are rejected, not clamped. An integral number (``5.0``) is an integer, as in JSON
  Schema. Strings with an unpaired surrogate escape (``"\\ud800"``: no UTF-8 form) and integers
  of more than ``MAX_INT_DIGITS`` digits are a 400.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.http.errors import ApiError, BadRequest, PayloadTooLarge, UnsupportedMediaType
from api.http.params import has_control, text_pattern

DEFAULT_MAX_BYTES = 64 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_INT_DIGITS = 100  # longer integers in a body are a 400 (int64 needs 19 digits)


@dataclass(frozen=True, kw_only=True)
class Field:
    name: str = ""
    required: bool = False
    description: str = ""

    def check(self, value: Any, where: str) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        out = self.json_schema()
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, kw_only=True)
class IntField(Field):
    minimum: int = 1
    maximum: int = 2**63 - 1

    def check(self, value: Any, where: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON Schema's integer: 5.0 is the integer 5
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{where} must be an integer, got {_kind(value)}")
        if not self.minimum <= value <= self.maximum:
            raise BadRequest(f"{where} must be from {self.minimum} to {self.maximum}, got {value}")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True, kw_only=True)
class NumberField(Field):
    minimum: float = 0.0
    maximum: float = 1.0
    step: float | None = None  # values must be multiples of this

    def check(self, value: Any, where: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise BadRequest(f"{where} must be a number, got {_kind(value)}")
        if not self.minimum <= value <= self.maximum:
            raise BadRequest(
                f"{where} must be from {self.minimum:g} to {self.maximum:g}, got {value:g}"
            )
        if self.step and abs(value / self.step - round(value / self.step)) > 1e-9:
            raise BadRequest(f"{where} must be a multiple of {self.step:g}, got {value:g}")
        return float(value)

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number", "minimum": self.minimum, "maximum": self.maximum}
        if self.step:
            out["multipleOf"] = self.step
        return out


@dataclass(frozen=True, kw_only=True)
class StringField(Field):
    min_length: int = 1
    max_length: int = 100
    choices: tuple[str, ...] = ()  # matched case-insensitively, returned as listed

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise BadRequest(f"{where} must be a string, got {_kind(value)}")
        if _SURROGATE.search(value):  # a lone "\ud800" escape: no UTF-8 form, so unstorable
            raise BadRequest(f"{where} must be Unicode text; it has an unpaired surrogate escape")
        if not self.choices and has_control(value):  # before trimming, as the schema says
            raise BadRequest(f"{where} must not contain control characters")
        text = value.strip()
        if self.choices:
            for choice in self.choices:
                if text.lower() == choice.lower():
                    return choice
            raise BadRequest(f"{where} must be one of {', '.join(self.choices)}; got {_show(text)}")
        if not self.min_length <= len(text) <= self.max_length:
            raise BadRequest(
                f"{where} must be {self.min_length} to {self.max_length} characters, got {len(text)}"
            )
        return text

    def json_schema(self) -> dict[str, Any]:
        if self.choices:
            return {"type": "string", "enum": list(self.choices)}
        return {
            "type": "string",
            "minLength": self.min_length,
            "maxLength": self.max_length,
            "pattern": text_pattern(self.min_length),
        }


@dataclass(frozen=True, kw_only=True)
class ObjectField(Field):
    fields: tuple[Field, ...] = ()

    def check(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise BadRequest(f"{where} must be an object, got {_kind(value)}")
        known = {f.name: f for f in self.fields}
        for key in value:
            if key not in known:
                raise BadRequest(
                    f"{where}: unknown field {_show(key)}; allowed: {', '.join(known)}"
                )
        out = {}
        for name, field in known.items():
            if name in value and value[name] is not None:
                out[name] = field.check(
                    value[name], f"{where}.{name}" if where != "body" else f"'{name}'"
                )
            elif field.required:
                raise BadRequest(f"{where}: field '{name}' is required")
        return out

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {f.name: f.schema() for f in self.fields},
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": False,
        }


@dataclass(frozen=True, kw_only=True)
class ListField(Field):
    item: Field
    min_items: int = 0
    max_items: int = 100
    unique: bool = False

    def check(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise BadRequest(f"{where} must be an array, got {_kind(value)}")
        if not self.min_items <= len(value) <= self.max_items:
            raise BadRequest(
                f"{where} must have {self.min_items} to {self.max_items} items, got {len(value)}"
            )
        out = [self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if self.unique:
            keys = [json.dumps(v, sort_keys=True) for v in out]
            if len(set(keys)) != len(keys):
                raise BadRequest(f"{where} must not repeat items")
        return out

    def json_schema(self) -> dict[str, Any]:
        out = {
            "type": "array",
            "items": self.item.schema(),
            "minItems": self.min_items,
            "maxItems": self.max_items,
        }
        if self.unique:
            out["uniqueItems"] = True
        return out


@dataclass(frozen=True)
class Body:
    """A JSON object body: its schema name in the spec, and its fields."""

    name: str
    fields: tuple[Field, ...]
    description: str = ""

    def parse(self, document: Any) -> dict[str, Any]:
        return ObjectField(fields=self.fields).check(document, "body")

    def json_schema(self) -> dict[str, Any]:
        out = ObjectField(fields=self.fields).json_schema()
        if self.description:
            out["description"] = self.description
        return out


def read_json(environ: Mapping[str, Any], max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """The request's JSON document (see the module docstring for what is refused)."""
    ctype = str(environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise UnsupportedMediaType(
            f"the body must be JSON (Content-Type: application/json), got {_show(ctype)}"
        )
    raw_length = str(environ.get("CONTENT_LENGTH") or "").strip()
    if raw_length:
        if not (raw_length.isascii() and raw_length.isdigit()):  # (isdigit alone takes "²")
            raise BadRequest("the Content-Length header is not a number")
        digits = raw_length.lstrip("0") or "0"
        if len(digits) > 18 or int(digits) > max_bytes:  # (int() refuses over 4,300 digits)
            size = digits if len(digits) <= 18 else "over 10^18"
            raise PayloadTooLarge(f"the body is {size} bytes; the limit is {max_bytes}")
        data = _read(environ, int(digits))
    else:  # chunked or unknown length: read at most one byte past the limit
        data = _read(environ, max_bytes + 1)
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"the body is larger than the limit of {max_bytes} bytes")
    if not data.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        text = data.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_object, parse_constant=_constant, parse_int=_integer
        )
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid UTF-8") from None
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def _read(environ: Mapping[str, Any], size: int) -> bytes:
    try:
        return environ["wsgi.input"].read(size)
    except ApiError:  # the worker's read deadline passed (RequestTimeout): answered as it is
        raise
    except Exception as exc:  # the server could not read it (bad chunked framing, a client gone)
        raise BadRequest(f"the request body could not be read ({type(exc).__name__})") from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key.startswith("$") or "\x00" in key or "." in key:
            raise BadRequest(
                f"field names may not start with '$' or contain '.' or NUL: {_show(key)}"
            )
        if key in out:
            raise BadRequest(f"field {_show(key)} is given twice")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise BadRequest(f"{name} is not a JSON number")


def _integer(digits: str) -> int:
    # int() refuses more than 4,300 digits with a ValueError (a 500 if it got through)
    if len(digits) > MAX_INT_DIGITS:
        raise BadRequest(
            f"a number in the body has {len(digits)} digits; the limit is {MAX_INT_DIGITS}"
        )
    return int(digits)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(raw: str, limit: int = 40) -> str:
    return repr(raw if len(raw) <= limit else raw[:limit] + "...")
