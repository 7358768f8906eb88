"""A small reader for the flat EDN that Jepsen histories use.

Supports what Jepsen writes in op maps: maps with keyword keys, vectors and
lists, strings with escapes, integers, floats, nil, true/false, keywords
(returned as ``Keyword``), sets (returned as frozensets). Anything else is a
clear :class:`EdnError` with the column.
"""

from __future__ import annotations

import re
from typing import Any


class EdnError(ValueError):
    pass


class Keyword(str):
    """An EDN keyword (``:ok``), as the string without its colon."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f":{str(self)}"


_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?N?M?")
_SYMBOL = re.compile(r"[^\s,()\[\]{}\"]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> EdnError:
        return EdnError(f"{what} at column {self.pos + 1}")

    def skip(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r\n,":
                self.pos += 1
            elif c == ";":
                while self.pos < n and text[self.pos] != "\n":
                    self.pos += 1
            else:
                break

    def value(self) -> Any:
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("unexpected end of input")
        c = self.text[self.pos]
        if c == "{":
            return self.coll("}", dict)
        if c == "[":
            return self.coll("]", list)
        if c == "(":
            return self.coll(")", list)
        if c == "#" and self.text.startswith("#{", self.pos):
            self.pos += 1
            return self.coll("}", frozenset)
        if c == '"':
            return self.string()
        if c == ":":
            m = _SYMBOL.match(self.text, self.pos + 1)
            if not m:
                raise self.fail("empty keyword")
            self.pos = m.end()
            return Keyword(m.group())
        m = _NUMBER.match(self.text, self.pos)
        if m and (m.end() == len(self.text) or not _SYMBOL.match(self.text[m.end()])):
            self.pos = m.end()
            tok = m.group().rstrip("NM")
            return float(tok) if ("." in tok or "e" in tok or "E" in tok) else int(tok)
        m = _SYMBOL.match(self.text, self.pos)
        if not m:
            raise self.fail(f"unexpected {c!r}")
        self.pos = m.end()
        word = m.group()
        if word == "nil":
            return None
        if word in ("true", "false"):
            return word == "true"
        raise EdnError(f"unsupported symbol {word!r} at column {m.start() + 1}")

    def coll(self, close: str, kind: type) -> Any:
        self.pos += 1
        items: list[Any] = []
        while True:
            self.skip()
            if self.pos >= len(self.text):
                raise self.fail(f"missing {close!r}")
            if self.text[self.pos] == close:
                self.pos += 1
                break
            items.append(self.value())
        if kind is dict:
            if len(items) % 2:
                raise self.fail("a map needs an even number of forms")
            try:
                return dict(zip(items[::2], items[1::2]))
            except TypeError:
                raise self.fail("unhashable map key") from None
        if kind is frozenset:
            try:
                return frozenset(items)
            except TypeError:
                raise self.fail("unhashable set element") from None
        return items

    def string(self) -> str:
        out: list[str] = []
        i = self.pos + 1
        text = self.text
        while i < len(text):
            c = text[i]
            if c == '"':
                self.pos = i + 1
                return "".join(out)
            if c == "\\":
                i += 1
                if i >= len(text):
                    break
                esc = text[i]
                if esc not in _ESCAPES:
                    raise EdnError(f"unsupported escape \\{esc} at column {i + 1}")
                out.append(_ESCAPES[esc])
            else:
                out.append(c)
            i += 1
        raise self.fail("unterminated string")


def loads(text: str) -> Any:
    """Parse exactly one EDN form."""
    r = _Reader(text)
    v = r.value()
    r.skip()
    if r.pos != len(text):
        raise r.fail("unexpected text after the form")
    return v
