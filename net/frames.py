"""Peer frames: length-prefixed msgpack, the handshake, and the cluster-secret proof.

A frame is a 4-byte big-endian length and that many bytes of msgpack: an
array whose first element names the kind. The length is checked against the
maximum frame size *before* anything is read or allocated, so a peer can't
make a node buffer gigabytes. Every decoding error is a :class:`FrameError`
whose message says what was wrong; the connection that sent it is closed,
the node carries on.

The handshake, on every connection, in both directions:

1. ``[HELLO, version, cluster_name, node_id, raft_addr, nonce]``: each side
   checks the version and the cluster name (a node of another cluster is
   refused), and learns the peer's id and address.
2. With a cluster secret, ``[AUTH, proof]`` where proof is
   HMAC-SHA256(secret, "clusterkit-auth" | role | dialler's id | acceptor's
   id | dialler's nonce | acceptor's nonce), role "dial" or "accept": it
   proves knowledge of the secret without sending it. The dialler proves
   first; the acceptor checks that proof before it sends its own. Binding
   the role, both ids and both nonces makes a proof useless anywhere else:
   a recorded one on another connection (fresh nonces), and one a node was
   made to compute on a connection an attacker opened (a node asked to
   prove itself to a stranger would otherwise hand over the very proof the
   stranger needs to pass for that node at another node). Without a secret
   on either side no AUTH is sent; a node with a secret refuses a peer
   without one.
3. Then ``[RAFT, message]`` frames, the message in the core codec's wire form.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from clusterkit.raft.codec import from_wire, to_wire
from clusterkit.raft.errors import CodecError
from clusterkit.raft.messages import Message

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 16 << 20
HEADER = struct.Struct(">I")

HELLO, AUTH, RAFT = 1, 2, 3
_AUTH_LABEL = b"clusterkit-auth"


class FrameError(ValueError):
    """A frame that can't be accepted: oversized, malformed, of an unknown kind, or a failed handshake.

    ``reason`` is the counter it goes to (the label of ``clusterkit_frame_errors_total``): set where
    the error is raised, never guessed from the message, which quotes what the peer sent.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Hello:
    version: int
    cluster: str
    node_id: str
    raft_addr: str
    nonce: bytes
    cluster_id: str = ""  # made at bootstrap; "" from a node that has none yet (or predates ids)


def frame(body: list[Any]) -> bytes:
    data = msgpack.packb(body, use_bin_type=True)
    return HEADER.pack(len(data)) + data


def check_length(header: bytes, max_frame: int) -> int:
    (length,) = HEADER.unpack(header)
    if length == 0:
        raise FrameError("empty frame", "invalid")
    if length > max_frame:
        raise FrameError(f"frame of {length} bytes exceeds the maximum of {max_frame}", "oversized")
    return length


def decode_body(data: bytes) -> list[Any]:
    try:
        body = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise FrameError(f"malformed msgpack: {exc}", "malformed") from None
    if type(body) is not list or not body or type(body[0]) is not int:
        raise FrameError("a frame must be an array starting with its kind", "malformed")
    return body


class FrameReader:
    """Reads frames off a stream a chunk at a time: one await yields every frame that has fully
    arrived (at least one), so a pipelined peer costs one wake-up per chunk, not two per frame."""

    def __init__(self, reader: Any, max_frame: int, chunk: int = 1 << 16) -> None:
        self.reader = reader
        self.max_frame = max_frame
        self.chunk = chunk
        self._buf = bytearray()

    async def frames(self) -> list[list[Any]]:
        out: list[list[Any]] = []
        while not out:
            buf = self._buf
            pos = 0
            while len(buf) - pos >= 4:
                length = check_length(bytes(buf[pos:pos + 4]), self.max_frame)
                if len(buf) - pos - 4 < length:
                    break
                out.append(decode_body(bytes(buf[pos + 4:pos + 4 + length])))
                pos += 4 + length
            del buf[:pos]
            if out:
                break
            data = await self.reader.read(max(self.chunk, 4 - len(buf)))
            if not data:
                raise asyncio.IncompleteReadError(bytes(buf), None)
            buf += data
        return out


# ------------------------------------------------------------------ the handshake
def is_loopback(peername: Any) -> bool:
    """A socket's peer address is this machine's loopback (IPv4, IPv6 or IPv4-mapped)."""
    try:
        address = ipaddress.ip_address(peername[0])
    except (TypeError, ValueError, IndexError):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def hello_frame(cluster: str, node_id: str, raft_addr: str, nonce: bytes, cluster_id: str = "") -> bytes:
    return frame([HELLO, PROTOCOL_VERSION, cluster, node_id, raft_addr, nonce, cluster_id])


def parse_hello(body: list[Any], cluster: str) -> Hello:
    # (six fields from a node that predates cluster ids: no id to compare)
    if body[0] != HELLO or len(body) not in (6, 7):
        raise FrameError("handshake: expected a hello frame", "handshake")
    _, version, their_cluster, node_id, raft_addr, nonce, *rest = body
    cluster_id = rest[0] if rest else ""
    if type(cluster_id) is not str or len(cluster_id) > 64:
        raise FrameError("handshake: malformed cluster id", "handshake")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise FrameError(f"handshake: protocol version {version!r}, this node speaks {PROTOCOL_VERSION}",
                         "handshake")
    if type(their_cluster) is not str or their_cluster != cluster:
        raise FrameError(f"handshake: the peer belongs to cluster {their_cluster!r}, not {cluster!r}", "handshake")
    if type(node_id) is not str or not node_id or type(raft_addr) is not str or type(nonce) is not bytes:
        raise FrameError("handshake: malformed hello", "handshake")
    if len(nonce) < 16:
        raise FrameError("handshake: nonce too short", "handshake")
    return Hello(version, their_cluster, node_id, raft_addr, nonce, cluster_id)


DIAL, ACCEPT = "dial", "accept"


@dataclass(frozen=True)
class Transcript:
    """What both sides of one connection know after the hellos; every proof is bound to all of it."""

    dialer_id: str
    acceptor_id: str
    dialer_nonce: bytes
    acceptor_nonce: bytes


def proof(secret: bytes, role: str, t: Transcript) -> bytes:
    # msgpack keeps the fields apart: no two transcripts encode to the same bytes.
    data = msgpack.packb([role, t.dialer_id, t.acceptor_id, t.dialer_nonce, t.acceptor_nonce], use_bin_type=True)
    return hmac.new(secret, _AUTH_LABEL + data, hashlib.sha256).digest()


def auth_frame(secret: bytes, role: str, t: Transcript) -> bytes:
    return frame([AUTH, proof(secret, role, t)])


def check_auth(body: list[Any], secret: bytes, role: str, t: Transcript) -> None:
    """Check the peer's proof; ``role`` is the peer's (DIAL when we accepted the connection)."""
    if body[0] != AUTH or len(body) != 2 or type(body[1]) is not bytes:
        raise FrameError("handshake: this cluster needs a secret; the peer sent no proof of it", "handshake")
    if not hmac.compare_digest(body[1], proof(secret, role, t)):
        raise FrameError("handshake: wrong cluster secret", "handshake")


# ------------------------------------------------------------------ Raft messages
def raft_frame(msg: Message) -> bytes:
    return frame([RAFT, to_wire(msg)])


def parse_raft(body: list[Any], peer_id: str, own_id: str) -> Message:
    if body[0] != RAFT or len(body) != 2:
        raise FrameError(f"unknown frame kind {body[0]!r}", "unknown-kind")
    try:
        msg = from_wire(body[1])
    except CodecError as exc:
        raise FrameError(str(exc), "invalid") from None
    # A peer speaks for itself only: a message claiming another sender (or for another node) is forged.
    if msg.src != peer_id:
        raise FrameError(f"a message from {msg.src!r} arrived on {peer_id!r}'s connection", "forged")
    if msg.dst != own_id:
        raise FrameError(f"a message for {msg.dst!r} arrived at {own_id!r}", "forged")
    return msg
