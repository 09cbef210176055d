"""Reports: matplotlib figures and one self-contained HTML file built from sections.

>>> from advlab.report import Section, Table, write_report
>>> write_report("runs/x", "My run", [Section("Numbers", "Text.", tables=[Table(["a"], [[1]])])])  # doctest: +SKIP
"""

from advlab.report.figures import activation_plots, as_images, image_pairs, to_png, tradeoff_curve
from advlab.report.html import Figure, Section, Table, format_value, render_html, write_report

__all__ = [
    "Figure",
    "Section",
    "Table",
    "activation_plots",
    "as_images",
    "format_value",
    "image_pairs",
    "render_html",
    "to_png",
    "tradeoff_curve",
    "write_report",
]
