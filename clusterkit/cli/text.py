"""Small helpers for what the command line prints."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``plural(1, "node")`` -> "1 node", ``plural(3, "copy", "copies")`` -> "3 copies"."""
    word = singular if count == 1 else (plural_form if plural_form is not None else singular + "s")
    return f"{count} {word}"
