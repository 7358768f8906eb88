"""Addresses as the seed writes them (``:8080``, ``localhost:8080``, ``127.0.0.1:8080``): where to
bind, where to dial, and the HTTP base URL of a node's API. Pure functions, imported by the node's
hosting code and by the client SDK alike."""

from __future__ import annotations


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` as (host, port); an empty host (``:8080``) is loopback to dial."""
    host, _, port = addr.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def http_bind(addr: str) -> tuple[str, int]:
    """``:8080`` binds every interface, as in the Go version; ``127.0.0.1:8080`` only loopback."""
    host, port = split_addr(addr)
    return ("0.0.0.0" if addr.startswith(":") else host), port


def http_base(addr: str, tls: bool = False) -> str:
    """``:8080`` -> ``http://127.0.0.1:8080``; ``localhost:8080`` -> ``http://localhost:8080``
    (``https://`` on a TLS cluster); an address given with its scheme is kept."""
    if addr.startswith(("http://", "https://")):
        return addr.rstrip("/")
    host, _, port = addr.rpartition(":")
    return f"{'https' if tls else 'http'}://{host or '127.0.0.1'}:{port}"


def port_of(addr: str) -> int:
    """The port of ``host:port`` (0 when there is none to read): the seed's node ``port`` field."""
    _, _, port = addr.rpartition(":")
    return int(port) if port.isdigit() and len(port) <= 5 else 0
