"""Well-formed peer and client frames with extreme field values, for the Raft and KV ports.

Shared by tests/test_net_fuzz_extreme.py (a seeded few hundred) and bench/soak.py (tens of
thousands); tests load it by path, as they load the other bench modules. Every case is bytes to
send on a fresh connection after the port's greeting: a hello (Raft: as a stranger or under a
member's id, with no raft address so the node's own routing is untouched; KV: a client hello, or
a peer hello under a member's id), then one frame of msgpack that is valid framing and mostly
valid message shape, with fields from :data:`INTS`, wrong types, huge lists and strings, deep
nesting and unknown tags. Nothing here needs a secret: without one, a node hears loopback peers.

Cases are a pure function of (seed, index) through ``random.Random``: a failing run replays.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from clusterkit.kv import messages as kv_messages
from clusterkit.net.frames import HELLO, PROTOCOL_VERSION, RAFT
from clusterkit.net.kv_service import CLIENT_HELLO, CLIENT_VERSION
from clusterkit.raft import codec as raft_codec

# The values that broke or could break something: msgpack's limits, the codec's bound (2**62)
# and its neighbours, negatives, and ordinary small numbers so that some messages get far in.
INTS = [2**64 - 1, 2**64 - 2, 2**63, 2**63 - 1, 2**62 + 1, 2**62, 2**62 - 1, 2**62 - 2, 2**32, 2**31 - 1,
        -1, -(2**63), 0, 1, 2, 3, 7, 1000]
# Terms just below the codec's bound: valid on the wire, and (as of 43ae4b1) adopted by every node,
# after which no election succeeds (tests/test_net_fuzz_extreme.py, the xfail test). raft_cases
# leaves them out of the term field unless asked (``near_max=True``) until that is fixed.
NEAR_MAX = {2**62 - 1, 2**62 - 2}
WRONG = [None, 1.5, float("inf"), "7", b"\x00", True, [], {}, [[[[1]]]], {"a": 1}]
HEADER = struct.Struct(">I")
MAX_PAYLOAD = 8 << 20  # under the Raft port's 16 MiB frame limit and the KV port's 64 MiB


def pack(body: Any) -> bytes:
    data = msgpack.packb(body, use_bin_type=True)
    return HEADER.pack(len(data)) + data


def deep(levels: int) -> Any:
    """A list nested ``levels`` deep (msgpack's packer stops at 512: deeper ones are :func:`deep_raw`)."""
    v: Any = 0
    for _ in range(min(levels, 500)):
        v = [v]
    return v


def deep_raw(levels: int) -> bytes:
    """The msgpack bytes of a one-element array nested ``levels`` deep."""
    return b"\x91" * levels + b"\x00"


@dataclass(frozen=True)
class Case:
    port: str  # "raft" or "kv"
    name: str  # what it is, for a failure message
    data: bytes  # hello and frame(s), sent after reading the node's greeting (Raft) or at once (KV)


class _Gen:
    def __init__(self, rng: random.Random, near_max: bool) -> None:
        self.rng = rng
        self.ints = INTS
        self.term_ints = INTS if near_max else [v for v in INTS if v not in NEAR_MAX]

    p_extreme = 0.55  # set per message: all plausible, one field in a few extreme, or most

    def int_(self, plausible: int = 1, term: bool = False) -> Any:
        r = self.rng.random()
        if r < self.p_extreme:
            return self.rng.choice(self.term_ints if term else self.ints)
        if r < self.p_extreme * 1.2:
            return self.rng.choice(WRONG)
        return plausible + self.rng.randrange(3)

    def pick_mode(self) -> None:
        """How wild the next message is: valid shapes must get past the codec to reach the core."""
        self.p_extreme = self.rng.choice([0.0, 0.1, 0.2, 0.55])

    def str_(self, plausible: str) -> Any:
        r = self.rng.random()
        if r < 0.7:
            return plausible
        if r < 0.8:
            return "x" * self.rng.choice([0, 1, 300, 70_000, 1 << 20])
        if r < 0.9:
            return "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace") + "é\x00"
        return self.rng.choice(WRONG)

    def bytes_(self) -> Any:
        r = self.rng.random()
        if r < 0.6:
            return os.urandom(self.rng.choice([0, 8, 1000]))
        if r < 0.8:
            return b"\xc1" * self.rng.choice([1, 1 << 20])
        return self.rng.choice(WRONG)

    def list_(self, item: Any) -> Any:
        r = self.rng.random()
        if r < 0.5:
            return [item() for _ in range(self.rng.choice([0, 1, 3]))]
        if r < 0.7:  # many of one small item (a huge item repeated would only be cut by the size limit)
            one = item()
            for _ in range(5):
                if len(msgpack.packb(one, use_bin_type=True)) < 200:
                    break
                one = item()
            else:
                one = 0
            return [one] * self.rng.choice([1000, 20_000])
        if r < 0.8:
            return deep(self.rng.choice([100, 400]))
        return self.rng.choice(WRONG)

    def bool_(self) -> Any:
        return self.rng.choice([True, False, True, False, 0, 1, None, "true"])


def _raft_fields(cls: type) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in dataclasses.fields(cls)]


_RAFT = {tag: (cls, _raft_fields(cls)) for cls, tag in raft_codec._TAGS.items()}
_KV = {tag: (spec.cls, [(f.name, f.type) for f in dataclasses.fields(spec.cls)])
       for tag, spec in kv_messages._SPECS.items()}


def raft_message(g: _Gen, src: str, dst: str) -> Any:
    rng = g.rng
    g.pick_mode()
    if rng.random() < 0.04:
        return [rng.choice([0, 14, 99, -1, 2**64 - 1, "1", None]), *[g.int_() for _ in range(rng.randrange(8))]]
    tag = rng.choice(sorted(_RAFT))
    _cls, fields = _RAFT[tag]
    out: list[Any] = [tag]
    for name, kind in fields:
        if name == "src":
            out.append(src if rng.random() < 0.95 else g.str_(src))
        elif name == "dst":
            out.append(dst if rng.random() < 0.95 else g.str_(dst))
        elif kind == "int":
            out.append(g.int_(term=name == "term"))
        elif kind == "bool":
            out.append(g.bool_())
        elif kind == "bytes":
            out.append(g.bytes_())
        elif kind == "list[str]":
            out.append(g.list_(lambda: g.str_(rng.choice(["node-1", "node-2", "node-3", "nobody"]))))
        elif kind == "list[Entry]":
            out.append(g.list_(lambda: [g.int_(), g.int_(), g.bytes_(), g.rng.choice([0, 1, 2, 3, -1, 2**64 - 1])]))
        else:
            out.append(g.str_(""))
    if rng.random() < 0.05:  # a field too many or too few
        out = out[:-1] if rng.random() < 0.5 else [*out, g.int_()]
    return out


def _record(g: _Gen) -> Any:
    if g.rng.random() < 0.85:
        return [g.int_(), g.str_("fuzz"), g.rng.choice(["v", b"v", None, "x" * 70_000, 5])]
    return g.rng.choice(WRONG)


def kv_message(g: _Gen, key_prefix: str, peer: bool) -> Any:
    rng = g.rng
    g.pick_mode()
    if rng.random() < 0.04:
        return [rng.choice([9, 99, -1, 2**64 - 1, "5", None]), g.int_()]
    tags = sorted(_KV) if peer else [5, 6]  # a client sends Set and Get; a peer anything
    tag = rng.choice(tags)
    _cls, fields = _KV[tag]
    out: list[Any] = [tag]
    for name, kind in fields:
        base = kind.removesuffix(" | None")
        if name == "key":
            out.append(g.str_(f"{key_prefix}{rng.randrange(8)}"))
        elif base == "int":
            out.append(g.int_(plausible=rng.choice([0, 1, 5])))
        elif base == "bool":
            out.append(g.bool_())
        elif base in ("str", "str | bytes"):
            out.append(g.str_("v"))
        elif base == "Record":
            out.append(_record(g))
        elif base == "list[int]":
            out.append(g.list_(g.int_))
        elif base == "list[tuple[str, Record]]":
            out.append(g.list_(lambda: [g.str_(f"{key_prefix}{rng.randrange(8)}"), _record(g)]))
        else:
            out.append(None)
    if rng.random() < 0.3:  # defaults left out (valid), or one too many (invalid)
        out = out[:-1] if rng.random() < 0.7 else [*out, g.int_()]
    return out


def _sized(body: Any) -> bytes | None:
    data = msgpack.packb(body, use_bin_type=True)
    return None if len(data) > MAX_PAYLOAD else HEADER.pack(len(data)) + data


def raft_cases(seed: int, n: int, target: str, members: list[str], cluster: str = "clusterkit-cluster",
               near_max: bool = False) -> Iterator[Case]:
    """``n`` Raft-port cases for node ``target``: a hello as a stranger or as one of the other
    ``members`` (no raft address, so the node's routing is untouched), then one Raft frame."""
    rng = random.Random(seed)
    g = _Gen(rng, near_max)
    others = [m for m in members if m != target]
    made = 0
    while made < n:
        src = rng.choice(others) if rng.random() < 0.7 else f"fuzz-{rng.randrange(4)}"
        hello = pack([HELLO, PROTOCOL_VERSION, cluster, src, "", os.urandom(16)])
        r = rng.random()
        if r < 0.04:
            levels = rng.choice([200, 20_000, 1_000_000])
            raw = b"\x92" + msgpack.packb(RAFT) + deep_raw(levels)
            made += 1
            yield Case("raft", f"raft#{made - 1} seed={seed} src={src} nested {levels} deep",
                       hello + HEADER.pack(len(raw)) + raw)
            continue
        if r < 0.07:
            body = [RAFT, raft_message(g, src, target), "extra"]
        else:
            body = [RAFT, raft_message(g, src, target)]
        framed = _sized(body)
        if framed is None:
            continue
        made += 1
        yield Case("raft", f"raft#{made - 1} seed={seed} src={src} {repr(body[1])[:120]}", hello + framed)


def kv_cases(seed: int, n: int, members: list[str], cluster: str = "clusterkit-cluster",
             key_prefix: str = "fuzz/", target: str = "") -> Iterator[Case]:
    """``n`` KV-port cases: a client hello then Set/Get, or a peer hello under a member's id then
    any KV message (or a batch of them). Keys start with ``key_prefix``: a run's own keys are not
    touched (a peer without a secret may write any key: that is not what is tested here)."""
    rng = random.Random(seed)
    g = _Gen(rng, near_max=True)
    others = [m for m in members if m != target] or members
    made = 0
    while made < n:
        peer = rng.random() < 0.6
        if peer:
            hello = pack([HELLO, PROTOCOL_VERSION, cluster, rng.choice(others), "", os.urandom(16)])
        else:
            hello = pack([CLIENT_HELLO, CLIENT_VERSION, cluster])
        r = rng.random()
        if r < 0.1:
            body: Any = [0, *[kv_message(g, key_prefix, peer) for _ in range(rng.randrange(1, 5))]]
        elif r < 0.13:
            levels = rng.choice([200, 20_000, 1_000_000])
            raw = deep_raw(levels)
            made += 1
            yield Case("kv", f"kv#{made - 1} seed={seed} nested {levels} deep", hello + HEADER.pack(len(raw)) + raw)
            continue
        else:
            body = kv_message(g, key_prefix, peer)
        framed = _sized(body)
        if framed is None:
            continue
        made += 1
        yield Case("kv", f"kv#{made - 1} seed={seed} {'peer' if peer else 'client'} {repr(body)[:120]}",
                   hello + framed)


# ------------------------------------------------------------------ sending
def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def send_case(port: int, case: Case, timeout: float = 10.0) -> str:
    """Send one case on a fresh connection and wait until the node is done with it: our side is
    shut for writing after the frame, so the node reads EOF once it has taken every byte (or closes
    earlier on a bad frame). What it answered is drained. Returns "closed" or "timeout" (the node
    kept the connection open past ``timeout``: a hang, which a caller reports)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if case.port == "raft":  # the Raft port greets first
            header = _recv_exact(sock, 4)
            if header is None or _recv_exact(sock, HEADER.unpack(header)[0]) is None:
                return "closed"
        try:
            sock.sendall(case.data)
            sock.shutdown(socket.SHUT_WR)
        except (ConnectionResetError, BrokenPipeError):
            return "closed"
        try:
            while sock.recv(1 << 16):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        except socket.timeout:
            return "timeout"
    return "closed"
