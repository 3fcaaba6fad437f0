"""``/docs``: a self-contained HTML page rendered from the OpenAPI spec (no CDN, no scripts)."""

from __future__ import annotations

from html import escape
from typing import Any

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:0}h2{margin-top:2.5rem;border-bottom:1px solid #ddd}
.op{border:1px solid #ddd;border-radius:6px;padding:.2rem 1rem 1rem;margin:1rem 0}
.method{font-weight:bold;color:#fff;background:#2a7ae2;border-radius:4px;padding:0 .4rem}
code{background:#f4f4f4;padding:0 .2rem;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
td,th{border:1px solid #e2e2e2;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#fafafa}
"""


def render(spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(info.get('title', 'API'))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(info.get('title', 'API'))}</h1>",
        f"<p>Version {escape(str(info.get('version', '')))} &middot; OpenAPI "
        f"{escape(spec.get('openapi', ''))} &middot; <a href='/openapi.json'>openapi.json</a></p>",
        f"<p>{escape(info.get('description', ''))}</p>",
        "<h2>Endpoints</h2><ul>",
    ]
    ops = [
        (path, method, op)
        for path, item in spec.get("paths", {}).items()
        for method, op in item.items()
    ]
    for path, method, op in ops:
        parts.append(
            f"<li><a href='#{_anchor(op)}'><code>{method.upper()} {escape(path)}</code></a> "
            f"&mdash; {escape(op.get('summary', ''))}</li>"
        )
    parts.append("</ul>")
    for path, method, op in ops:
        parts.append(_operation(path, method, op))
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        parts.append(f"<h3 id='schema-{escape(name)}'>{escape(name)}</h3>{_schema_table(schema)}")
    parts.append("</body></html>")
    return "\n".join(parts)


def _anchor(op: dict[str, Any]) -> str:
    return "op-" + escape(op.get("operationId", ""))


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    out = [
        f"<div class='op' id='{_anchor(op)}'><h3><span class='method'>{method.upper()}</span> "
        f"<code>{escape(path)}</code></h3><p><b>{escape(op.get('summary', ''))}</b></p>"
    ]
    if op.get("description"):
        out.append(f"<p>{escape(op['description'])}</p>")
    params = op.get("parameters") or []
    if params:
        out.append("<table><tr><th>Parameter</th><th>In</th><th>Type</th><th>Description</th></tr>")
        for p in params:
            req = " (required)" if p.get("required") else ""
            out.append(
                f"<tr><td><code>{escape(p['name'])}</code>{req}</td><td>{escape(p['in'])}</td>"
                f"<td>{_type(p.get('schema', {}))}</td><td>{escape(p.get('description', ''))}</td></tr>"
            )
        out.append("</table>")
    out.append("<table><tr><th>Status</th><th>Response</th></tr>")
    for status, resp in op.get("responses", {}).items():
        if "$ref" in resp:
            out.append(
                f"<tr><td>{escape(status)}</td><td>{_type({'$ref': '#/components/schemas/Error'})} "
                f"(error)</td></tr>"
            )
            continue
        content = resp.get("content", {})
        shown = "; ".join(
            f"{escape(media)}: {_type(body.get('schema', {}))}" for media, body in content.items()
        )
        described = escape(resp.get("description", ""))
        out.append(f"<tr><td>{escape(status)}</td><td>{described} &mdash; {shown}</td></tr>")
    out.append("</table></div>")
    return "\n".join(out)


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"<a href='#schema-{escape(name)}'>{escape(name)}</a>"
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "const" in schema:
        return f"<code>{escape(repr(schema['const']))}</code>"
    kind = schema.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else str(kind)
    if kind == "array" or (isinstance(kind, list) and "array" in kind):
        text = f"array of {_type(schema.get('items', {}))}"
    else:
        text = escape(text)
    details = []
    if "enum" in schema:
        details.append("one of " + ", ".join(escape(str(v)) for v in schema["enum"]))
    if "minimum" in schema or "maximum" in schema:
        details.append(f"{schema.get('minimum', '')}..{schema.get('maximum', '')}")
    if "minLength" in schema or "maxLength" in schema:
        details.append(f"{schema.get('minLength', 0)}..{schema.get('maxLength', '')} characters")
    if "default" in schema:
        details.append(f"default {escape(str(schema['default']))}")
    return text + (f" ({'; '.join(details)})" if details else "")


def _schema_table(schema: dict[str, Any]) -> str:
    props = schema.get("properties")
    if not props:
        return f"<p>{_type(schema)}</p>"
    required = set(schema.get("required", []))
    rows = ["<table><tr><th>Field</th><th>Type</th><th>Description</th></tr>"]
    for name, sub in props.items():
        flag = "" if name in required else " (optional)"
        rows.append(
            f"<tr><td><code>{escape(name)}</code>{flag}</td><td>{_type(sub)}</td>"
            f"<td>{escape(sub.get('description', ''))}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)
