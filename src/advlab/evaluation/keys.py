"""The names of an evaluation's units of work, made here and nowhere else.

A unit is one batch of one kind of work; its key names it in the run folder's store (so a
resumed or sharded run finds what is done) and in the in-memory map the results are built
from.  Keys are strings of the form ``kind/threat/budget/b<batch>``.
"""

from __future__ import annotations

__all__ = ["probe", "main", "minimal", "audit", "escalation"]


def probe(b: int) -> str:
    """Clean pass and audit probes of batch ``b``."""
    return f"probe/b{b}"


def main(threat: str, eps: float, b: int) -> str:
    """The cascade at budget ``eps`` of threat model ``threat`` on batch ``b``."""
    return f"main/{threat}/{eps!r}/b{b}"


def minimal(threat: str, b: int) -> str:
    """The minimal-norm attack of ``threat`` on batch ``b``."""
    return f"minimal/{threat}/b{b}"


def audit(threat: str, b: int) -> str:
    """The audit's attacks of ``threat`` on batch ``b``."""
    return f"audit/{threat}/b{b}"


def escalation(threat: str, actions: list[str], b: int) -> str:
    """The escalation (``actions``) of ``threat`` on batch ``b``."""
    return f"escalation/{threat}/{'+'.join(actions)}/b{b}"
