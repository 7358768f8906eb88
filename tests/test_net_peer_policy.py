"""Issue 20, item 8: without a secret or TLS nothing proves who a Raft peer is, so a node hears
peers on this machine only, unless told otherwise (as Redis's protected mode)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clusterkit.net.transport import Transport


class _Writer:
    """A connection's writer as _accept sees it: only its peer address matters here."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def _transport(**kwargs: Any) -> Transport:
    return Transport("n1", "c", "127.0.0.1:1", lambda m: None, lambda p: None, **kwargs)


@pytest.mark.parametrize("kwargs, refused", [
    ({}, True),
    ({"allow_remote": True}, False),
    ({"secret": b"0123456789abcdef0123"}, False),
])
def test_a_remote_peer_is_refused_without_a_secret_unless_allowed(kwargs: dict[str, Any], refused: bool) -> None:
    async def run() -> tuple[Transport, _Writer]:
        t = _transport(**kwargs)
        t._running = True
        reader = asyncio.StreamReader()
        reader.feed_eof()  # a peer that says nothing: only the address check decides what it gets
        writer = _Writer(("192.0.2.7", 40000))
        await t._accept(reader, writer)  # type: ignore[arg-type]
        return t, writer

    t, writer = asyncio.run(run())
    assert writer.closed
    assert (t.frame_errors["remote"] == 1) is refused
    assert (writer.written == b"") is refused  # refused: not even our hello


def test_a_loopback_peer_is_heard_without_a_secret() -> None:
    async def run() -> tuple[Transport, _Writer]:
        t = _transport()
        t._running = True
        reader = asyncio.StreamReader()
        reader.feed_eof()
        writer = _Writer(("127.0.0.1", 40000))
        await t._accept(reader, writer)  # type: ignore[arg-type]
        return t, writer

    t, writer = asyncio.run(run())
    assert t.frame_errors["remote"] == 0 and writer.written != b""  # it got our hello
