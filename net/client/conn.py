"""One pipelined connection from the SDK to one node's KV port: the client hello (with the API
token), then message documents out, batched per loop turn, and answers in, handed to the client."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Protocol

import msgpack

from clusterkit.kv.messages import BATCH, Message, from_frame

from ..addr import split_addr
from ..frames import HEADER, FrameReader, check_length, decode_body, frame
from ..kv_wire import CLIENT_HELLO, CLIENT_VERSION, KV_MAX_FRAME

log = logging.getLogger("clusterkit.net.client")
_packb = msgpack.packb


class ConnOwner(Protocol):
    """What a connection needs of its client (:class:`~.kv.KVClient` is one)."""

    ssl: ssl.SSLContext | None
    token: str | None
    cluster_name: str

    def _on_message(self, src: str, msg: Message) -> None: ...

    def _refused(self, node_id: str, why: str) -> None: ...

    def _on_conn_lost(self, conn: Conn) -> None: ...


def pack_frames(docs: list[list[Any]]) -> bytes:
    """Message documents for one node: one frame for all of them, or one each if that one frame
    would be too large (as :func:`~clusterkit.net.kv_service.encode_frames`)."""
    data = _packb(docs[0] if len(docs) == 1 else [BATCH, *docs], use_bin_type=True)
    if len(data) <= KV_MAX_FRAME // 4 or len(docs) == 1:
        return HEADER.pack(len(data)) + data
    return b"".join(frame(doc) for doc in docs)


class Conn:
    """One pipelined connection to one node's KV port: frames queued within a loop turn go out in one write."""

    def __init__(self, client: ConnOwner, node_id: str, addr: str) -> None:
        self.client = client
        self.node_id = node_id
        self.addr = addr
        self.buffer: list[list[Any]] = []  # message documents, sent in one frame at the end of this loop turn
        self.writer: asyncio.StreamWriter | None = None
        self.closed = False
        self._scheduled = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    def send(self, doc: list[Any]) -> None:
        if self.closed:
            return
        self.buffer.append(doc)
        if self.writer is not None and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self.buffer and self.writer is not None and not self.closed:
            docs, self.buffer = self.buffer, []
            self.writer.write(pack_frames(docs))

    async def _run(self) -> None:
        try:
            host, port = split_addr(self.addr)
            tls = self.client.ssl
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls is not None else None), 3.0)
            self.writer = writer
            token = self.client.token
            hello = [CLIENT_HELLO, CLIENT_VERSION, self.client.cluster_name]
            writer.write(frame(hello if token is None else [*hello, token]))
            body = await asyncio.wait_for(self._read(reader), 5.0)
            if body[0] == CLIENT_HELLO and len(body) > 3 and str(body[3]).startswith("refused"):
                self.client._refused(self.node_id, str(body[3]))  # (a wrong token: say so, not just time out)
            if body[0] != CLIENT_HELLO or len(body) < 3 or body[2] != self.node_id:
                raise ConnectionError(f"{self.addr} is not {self.node_id}'s KV port: {body[:4]!r}")
            self._flush()
            frames = FrameReader(reader, KV_MAX_FRAME)
            on_message, node_id = self.client._on_message, self.node_id
            while True:
                for body in await frames.frames():
                    for msg in from_frame(body):
                        on_message(node_id, msg)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - any failure ends this connection; the client reconnects
            log.debug("KV connection to %s at %s ended: %s", self.node_id, self.addr, exc)
        finally:
            self.closed = True
            if self.writer is not None:
                self.writer.close()
            self.client._on_conn_lost(self)

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> list[Any]:
        length = check_length(await reader.readexactly(4), KV_MAX_FRAME)
        return decode_body(await reader.readexactly(length))
