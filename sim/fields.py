"""Checking a scenario file's fields: each bad one is a :class:`ScenarioError` that names it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .network import ScenarioError


def number(doc: Mapping[str, Any], name: str, default: float, lo: float = 0.0, hi: float = math.inf) -> float:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScenarioError(f"{name} must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise ScenarioError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return float(value)


def whole(doc: Mapping[str, Any], name: str, default: int, lo: int = 0, hi: int = 10**9) -> int:
    value = doc.get(name, default)
    if type(value) is not int or not lo <= value <= hi:
        raise ScenarioError(f"{name} must be a whole number in [{lo}, {hi}], got {value!r}")
    return value


def only(doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {', '.join(unknown)}")


def flag(doc: Mapping[str, Any], name: str, default: bool) -> bool:
    value = doc.get(name, default)
    if type(value) is not bool:
        raise ScenarioError(f"{name} must be true or false, got {value!r}")
    return value
