"""The self-contained HTML report: a list of sections rendered by one Jinja2 template.

A report is a title, a few facts about the run, and :class:`Section` objects, each with text,
headline metrics, :class:`Table` objects and :class:`Figure` objects.  Figures are embedded
as base64 PNG data, and the stylesheet is inline, so the single ``report.html`` file opens
offline anywhere.  Any command (the demo, an evaluation) builds its own sections and calls
:func:`write_report`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Figure", "Table", "Section", "render_html", "write_report", "format_value"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Figure:
    """A PNG image with a file name (without extension) and a caption."""

    name: str
    png: bytes
    caption: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"figure name {self.name!r} must be a plain file name (letters, digits, . _ -)")
        if not self.png.startswith(b"\x89PNG"):
            raise ValueError(f"figure {self.name!r} is not PNG data")

    @property
    def filename(self) -> str:
        return f"{self.name}.png"

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.png)
        return path


@dataclass
class Table:
    """Rows of cells under column headers; numbers are formatted with :func:`format_value`."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"table row {i} has {len(row)} cells for {len(self.columns)} columns")

    def formatted(self) -> list[list[str]]:
        return [[format_value(v) for v in row] for row in self.rows]


@dataclass
class Section:
    """One part of a report.

    ``text`` is plain text (HTML is escaped); blank lines separate paragraphs.  ``metrics``
    are headline numbers shown as cards (label -> value), ``checks`` expectations shown as
    pass/fail badges (label -> bool).
    """

    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"

    @property
    def paragraphs(self) -> list[str]:
        return [p.strip() for p in re.split(r"\n\s*\n", self.text) if p.strip()]


def format_value(v: Any) -> str:
    """Numbers to short strings, ``-`` for missing values.  Floats below 10 keep three decimals
    (``1.000`` beside ``0.970``, never a bare ``1``), larger ones four significant digits."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4g}" if abs(v) >= 10 else f"{v:.3f}"
    return str(v)


def render_html(
    title: str,
    sections: Sequence[Section],
    *,
    subtitle: str = "",
    facts: dict[str, Any] | None = None,
) -> str:
    """The report as one HTML string (no external resources)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("advlab.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_value
    from advlab import __version__

    return env.get_template("report.html").render(
        title=title,
        subtitle=subtitle,
        facts={k: format_value(v) for k, v in (facts or {}).items()},
        sections=list(sections),
        version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(
    folder: str | Path,
    title: str,
    sections: Sequence[Section],
    *,
    subtitle: str = "",
    facts: dict[str, Any] | None = None,
    filename: str = "report.html",
    save_figures: bool = True,
) -> Path:
    """Write ``folder/report.html`` and (by default) every figure as ``folder/<name>.png``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    names = [f.name for s in sections for f in s.figures]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"figure names must be unique in a report; repeated: {', '.join(dupes)}")
    if save_figures:
        for s in sections:
            for f in s.figures:
                f.save(out)
    path = out / filename
    path.write_text(render_html(title, sections, subtitle=subtitle, facts=facts), encoding="utf-8")
    return path
