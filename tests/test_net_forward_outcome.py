"""A follower forwards a write to the leader: if the leader took the request and its answer was
lost (it died mid-request), the write may still commit, so the follower must answer "unknown"
(504), never "failed" (503). Found by `sim run leader-kill --real`: a write answered 503 that a
later read saw."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from types import SimpleNamespace

from clusterkit.net.auth import ApiAuth
from clusterkit.net.http import Api


@dataclass
class _Node:
    leader_addr: str
    id: str = "node-2"
    config: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(client_ssl=None, request_timeout=5.0))

    def leader_info(self) -> SimpleNamespace:
        return SimpleNamespace(id="node-1", api_addr=self.leader_addr)


async def _forward_to(addr: str) -> tuple[int, str]:
    api = Api(_Node(addr), ApiAuth())  # type: ignore[arg-type]
    response = await api._to_leader(SimpleNamespace(secure=False), "/registers/k", {"value": "v"}, method="PUT")
    return response.status, response.text or ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_leader_that_dies_after_taking_the_write_makes_it_unknown() -> None:
    async def run() -> tuple[int, str]:
        taken = asyncio.Event()

        async def dies_mid_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")  # the whole request reached it ...
            taken.set()
            writer.transport.abort()  # ... and it died before answering

        server = await asyncio.start_server(dies_mid_request, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            result = await _forward_to(f"127.0.0.1:{port}")
        assert taken.is_set()
        return result

    status, text = asyncio.run(run())
    assert status == 504 and "outcome unknown" in text


def test_a_write_taken_then_retried_by_the_client_library_is_still_unknown() -> None:
    """aiohttp sends an idempotent method (PUT) again after a disconnect: the second connection
    refused must not hide that the first delivered the request (found by `sim run --real`)."""

    async def run() -> tuple[int, str, int]:
        seen: list[bytes] = []
        server: asyncio.Server | None = None

        async def takes_it_and_dies(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            assert server is not None
            server.close()  # the process is gone: nothing listens any more
            writer.transport.abort()

        server = await asyncio.start_server(takes_it_and_dies, "127.0.0.1", 0)
        status, text = await _forward_to(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
        return status, text, len(seen)

    status, text, delivered = asyncio.run(run())
    assert delivered == 1 and status == 504 and "outcome unknown" in text


def test_a_leader_that_cannot_be_reached_never_saw_it() -> None:
    status, text = asyncio.run(_forward_to(f"127.0.0.1:{_free_port()}"))  # nothing listens there
    assert status == 503 and "did not answer" in text
