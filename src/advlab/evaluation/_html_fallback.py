"""A minimal stand-in for :mod:`advlab.report` (same names), used until that module exists."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    name: str
    png: bytes
    caption: str = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Section:
    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)


def write_report(folder: str | Path, title: str, sections: list[Section], *, subtitle: str = "", facts: dict[str, Any] | None = None, save_figures: bool = True) -> Path:
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title></head><body><h1>{e(title)}</h1><p>{e(subtitle)}</p><dl>"]
    parts += [f"<dt>{e(str(k))}</dt><dd>{e(str(v))}</dd>" for k, v in (facts or {}).items()]
    parts.append("</dl>")
    for s in sections:
        parts.append(f"<section id='{re.sub('[^a-z0-9]+', '-', s.title.lower())}'><h2>{e(s.title)}</h2>")
        parts += [f"<p>{e(p)}</p>" for p in s.text.split("\n\n") if p]
        parts += [f"<div class='metric'>{e(k)}: {e(str(v))}</div>" for k, v in s.metrics.items()]
        for t in s.tables:
            parts.append(f"<table><caption>{e(t.caption)}</caption><tr>" + "".join(f"<th>{e(c)}</th>" for c in t.columns) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in t.rows]
            parts.append("</table>")
        for f in s.figures:
            data = base64.b64encode(f.png).decode()
            parts.append(f"<figure><img alt='{e(f.name)}' src='data:image/png;base64,{data}'><figcaption>{e(f.caption)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    out = Path(folder) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(parts), encoding="utf-8")
    return out
