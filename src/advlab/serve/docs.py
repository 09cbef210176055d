"""The playground's API reference as one self-contained HTML page, rendered from the OpenAPI
document on the server.  FastAPI's default ``/docs`` loads Swagger UI from a CDN and is blank
without a network; this page needs nothing but the app itself."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["api_docs_html"]

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; color: #1d2433; max-width: 960px; margin: 24px auto; padding: 0 20px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin: 28px 0 6px; }
code, .path { font-family: ui-monospace, monospace; }
.method { display: inline-block; min-width: 52px; font-weight: 700; color: #fff; background: #3056d3; border-radius: 4px; padding: 1px 6px; font-size: 13px; }
.method.post { background: #067647; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; font-size: 14px; }
th, td { border-bottom: 1px solid #e4e7ec; text-align: left; padding: 4px 8px; vertical-align: top; }
th { color: #667085; font-weight: 600; }
.muted { color: #667085; font-size: 13px; }
"""


def _type(schema: dict[str, Any], spec: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s, spec) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}), spec)}"
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    return str(schema.get("type", "any"))


def _schema_table(name: str, spec: dict[str, Any]) -> str:
    schema = spec.get("components", {}).get("schemas", {}).get(name, {})
    required = set(schema.get("required", []))
    rows = []
    for field, prop in schema.get("properties", {}).items():
        default = "" if "default" not in prop else f"default {escape(repr(prop['default']))}"
        limits = ", ".join(f"{k} {prop[k]}" for k in ("minimum", "maximum", "exclusiveMinimum") if k in prop)
        note = "; ".join(p for p in (("required" if field in required else ""), default, limits) if p)
        rows.append(
            f"<tr><td><code>{escape(field)}</code></td><td>{escape(_type(prop, spec))}</td>"
            f"<td>{escape(prop.get('description', ''))}</td><td class=muted>{note}</td></tr>"
        )
    body = "".join(rows) or "<tr><td colspan=4 class=muted>no fields</td></tr>"
    return f"<table><tr><th>field</th><th>type</th><th>meaning</th><th></th></tr>{body}</table>"


def api_docs_html(spec: dict[str, Any]) -> str:
    """The reference page for an OpenAPI document ``spec`` (``app.openapi()``)."""
    info = spec.get("info", {})
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(info.get('title', 'API'))}: API reference</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(info.get('title', 'API'))}: API reference</h1>",
        f"<p>{escape(info.get('description', ''))} The machine-readable description is at "
        "<a href=/openapi.json><code>/openapi.json</code></a>. Every request and response is JSON.</p>",
    ]
    used: list[str] = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(f"<h2><span class='method {method}'>{method.upper()}</span> <span class=path>{escape(path)}</span></h2>")
            parts.append(f"<p>{escape(op.get('description') or op.get('summary') or '')}</p>")
            params = op.get("parameters", [])
            if params:
                rows = "".join(
                    f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p.get('in', ''))}</td>"
                    f"<td>{escape(_type(p.get('schema', {}), spec))}</td><td class=muted>{'required' if p.get('required') else ''}</td></tr>"
                    for p in params
                )
                parts.append(f"<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>{rows}</table>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                name = _type(body, spec)
                used.append(name)
                parts.append(f"<p class=muted>Request body: <a href='#schema-{escape(name)}'>{escape(name)}</a></p>")
            ok = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {}).get("schema")
            if ok:
                name = _type(ok, spec)
                if "$ref" in ok:
                    used.append(name)
                parts.append(f"<p class=muted>Response: {escape(name)}</p>")
    parts.append("<h2>Schemas</h2>")
    for name in dict.fromkeys(used + [n for n in spec.get("components", {}).get("schemas", {}) if not n.startswith(("HTTP", "Validation"))]):
        parts.append(f"<h3 id='schema-{escape(name)}'>{escape(name)}</h3>{_schema_table(name, spec)}")
    parts.append("</body></html>")
    return "\n".join(parts)
