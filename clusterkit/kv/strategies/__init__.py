"""Replication strategies, one module each, and the registry of them by name (:mod:`.registry`)."""

from .base import Route, Strategy
from .registry import STRATEGIES, by_name

__all__ = ["STRATEGIES", "Route", "Strategy", "by_name"]
