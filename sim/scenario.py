"""Scenarios as plain data: cluster shape, network and disk, workload, faults, expectations.

A scenario file is TOML (``scenarios/*.toml``); it knows nothing of which
world runs it. Faults are a list of timed, named faults, either scripted in
the file or generated from the run's seed (``[random]``), and either way
printable, replayable and shrinkable. Everything is validated on load: a bad
field is a :class:`ScenarioError` naming it.
"""

from __future__ import annotations

import math
import random
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from clusterkit.kv.server import STRATEGIES

from .network import Latency, ScenarioError
from .shapes import SHAPES

FAULT_KINDS = (
    "kill",  # SIGKILL: unsynced writes lost (torn = true: a prefix of them survives, the tail torn)
    "restart",  # start a killed node from its disk
    "pause",  # SIGSTOP: no ticks, messages wait
    "resume",
    "partition",  # a named shape, or explicit groups
    "heal",  # every link back, paused nodes resumed, clocks true, disks unstalled
    "join",  # a new empty node joins (Raft learner, then the cluster state)
    "leave",  # graceful leave: cluster state, then Raft
    "fail",  # the node dies and the leader marks it failed in the cluster state
    "skew",  # the node's clock runs at ``rate`` times real speed
    "stall",  # the node's disk takes ``seconds`` to complete its next syncs
    "wipe",  # the node's disk is lost: it restarts empty under its id, and must be replaced
)
# Who a fault targets, when not a node id: chosen when the fault fires, from the run's seed.
TARGETS = ("leader", "follower", "random", "killed", "paused", "new")
_RANDOM_KINDS = ("kill", "pause", "partition", "join", "leave", "fail", "skew", "stall", "wipe")
# Drawn when a scenario names no kinds. (wipe came later: named explicitly, so that the mix, and so
# every seed's schedule, of the scenarios written before it stays the same.)
_DEFAULT_KINDS = ("kill", "pause", "partition", "join", "leave", "fail", "skew", "stall")


def _number(doc: Mapping[str, Any], name: str, default: float, lo: float = 0.0, hi: float = math.inf) -> float:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScenarioError(f"{name} must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise ScenarioError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return float(value)


def _int(doc: Mapping[str, Any], name: str, default: int, lo: int = 0, hi: int = 10**9) -> int:
    value = doc.get(name, default)
    if type(value) is not int or not lo <= value <= hi:
        raise ScenarioError(f"{name} must be a whole number in [{lo}, {hi}], got {value!r}")
    return value


def _only(doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {', '.join(unknown)}")


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    node: str = ""  # a node id or a target (TARGETS); empty where the kind needs none
    shape: str = ""  # partition: a name from shapes.SHAPES
    groups: tuple[tuple[str, ...], ...] = ()  # partition: explicit groups instead of a shape
    rate: float = 1.0  # skew: clock speed factor
    seconds: float = 0.0  # stall: how long the disk hangs
    torn: bool = False  # kill: a torn write at the log's tail
    # Resolved forms, recorded by the nemesis so a replay needs no luck: the one-way links a
    # partition cut, and how many unsynced writes (and entries of the next) a torn kill kept.
    cuts: tuple[tuple[str, str], ...] = ()
    keep: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Fault:
        _only(doc, {f.name for f in fields(cls)}, "fault")
        kind = doc.get("kind")
        if kind not in FAULT_KINDS:
            raise ScenarioError(f"fault kind must be one of {', '.join(FAULT_KINDS)}, got {kind!r}")
        node = doc.get("node", "")
        if type(node) is not str:
            raise ScenarioError(f"fault node must be a string, got {node!r}")
        shape = doc.get("shape", "")
        if shape and shape not in SHAPES:
            raise ScenarioError(f"partition shape must be one of {', '.join(SHAPES)}, got {shape!r}")
        groups = doc.get("groups", ())
        if not isinstance(groups, (list, tuple)) or not all(
            isinstance(g, (list, tuple)) and all(type(n) is str for n in g) for g in groups
        ):
            raise ScenarioError(f"fault groups must be lists of node ids, got {groups!r}")
        cuts = doc.get("cuts", ())
        if not isinstance(cuts, (list, tuple)) or not all(
            isinstance(c, (list, tuple)) and len(c) == 2 and all(type(n) is str for n in c) for c in cuts
        ):
            raise ScenarioError(f"fault cuts must be [from, to] pairs of node ids, got {cuts!r}")
        keep = doc.get("keep", ())
        if not isinstance(keep, (list, tuple)) or len(keep) not in (0, 2) or not all(
            type(k) is int and k >= 0 for k in keep
        ):
            raise ScenarioError(f"fault keep must be [writes, entries], got {keep!r}")
        if kind == "partition" and not shape and not groups and not cuts:
            raise ScenarioError("a partition fault needs a shape, groups or cuts")
        torn = doc.get("torn", False)
        if type(torn) is not bool:
            raise ScenarioError(f"fault torn must be true or false, got {torn!r}")
        return cls(
            at=_number(doc, "at", 0.0),
            kind=kind,
            node=node,
            shape=shape,
            groups=tuple(tuple(g) for g in groups),
            rate=_number(doc, "rate", 1.0, 0.01, 100.0),
            seconds=_number(doc, "seconds", 0.0, 0.0, 3600.0),
            torn=torn,
            cuts=tuple((a, b) for a, b in cuts),
            keep=tuple(keep),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "kind": self.kind}  # exact: a replay fires at the same float time
        defaults = Fault(0.0, "heal")
        for name in ("node", "shape", "rate", "seconds", "torn"):
            value = getattr(self, name)
            if value != getattr(defaults, name):
                out[name] = value
        if self.groups:
            out["groups"] = [list(g) for g in self.groups]
        if self.cuts:
            out["cuts"] = [list(c) for c in self.cuts]
        if self.keep:
            out["keep"] = list(self.keep)
        return out

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.to_dict().items() if k not in ("at", "kind"))
        return f"{self.at:8.3f}s {self.kind} {extra}".rstrip()


@dataclass(frozen=True)
class Workload:
    clients: int = 3
    rate: float = 50.0  # operations per virtual second, all clients together
    keys: int = 3
    write_ratio: float = 0.5
    timeout: float = 1.0  # a client gives up after this long: info for a write, fail for a read
    # "": registers replicated through Raft; "sync" | "async" | "server-side": the KV store
    # (clusterkit.kv) with that strategy, its clients, and its migrations doing the copies
    kv: str = ""

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Workload:
        _only(doc, {f.name for f in fields(cls)}, "workload")
        kv = doc.get("kv", "")
        if kv not in ("", *STRATEGIES):
            raise ScenarioError(f"workload kv must be one of {', '.join(STRATEGIES)}, got {kv!r}")
        return cls(
            kv=kv,
            clients=_int(doc, "clients", 3, 0, 1000),
            rate=_number(doc, "rate", 50.0, 0.0, 1e6),
            keys=_int(doc, "keys", 3, 1, 10**6),
            write_ratio=_number(doc, "write_ratio", 0.5, 0.0, 1.0),
            timeout=_number(doc, "timeout", 1.0, 0.001, 3600.0),
        )


@dataclass(frozen=True)
class RandomFaults:
    """Faults drawn from the seed: ``rate`` per virtual second of the fault phase, kinds weighted
    by ``kinds``; with ``swarm``, each seed first draws its own subset of kinds and rate (as
    FoundationDB's and TigerBeetle's swarm testing do), so rare mixtures get reached."""

    rate: float = 0.5
    kinds: tuple[str, ...] = _DEFAULT_KINDS
    swarm: bool = True

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RandomFaults:
        _only(doc, {"rate", "kinds", "swarm"}, "random")
        kinds = tuple(doc.get("kinds", _DEFAULT_KINDS))
        bad = [k for k in kinds if k not in _RANDOM_KINDS]
        if bad or not kinds:
            raise ScenarioError(f"random kinds must be among {', '.join(_RANDOM_KINDS)}, got {list(kinds)!r}")
        swarm = doc.get("swarm", True)
        if type(swarm) is not bool:
            raise ScenarioError(f"random swarm must be true or false, got {swarm!r}")
        return cls(rate=_number(doc, "rate", 0.5, 0.0, 100.0), kinds=kinds, swarm=swarm)

    def generate(self, rng: random.Random, duration: float) -> list[Fault]:
        kinds, rate = list(self.kinds), self.rate
        if self.swarm:
            kinds = [k for k in kinds if rng.random() < 0.5] or [rng.choice(kinds)]
            rate = rate * rng.uniform(0.25, 2.0)
        out: list[Fault] = []
        t = 0.0
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= duration:
                break
            kind = rng.choice(kinds)
            if kind == "kill":
                out.append(Fault(t, "kill", rng.choice(("leader", "random")), torn=rng.random() < 0.3))
                out.append(Fault(t + rng.uniform(0.2, 3.0), "restart", "killed"))
            elif kind == "pause":
                out.append(Fault(t, "pause", rng.choice(("leader", "random"))))
                out.append(Fault(t + rng.uniform(0.2, 3.0), "resume", "paused"))
            elif kind == "partition":
                shape = rng.choice(SHAPES)
                out.append(Fault(t, "partition", shape=shape))
                out.append(Fault(t + rng.uniform(0.5, 4.0), "heal"))
            elif kind == "skew":
                out.append(Fault(t, "skew", "random", rate=rng.choice((0.5, 0.8, 1.25, 2.0))))
            elif kind == "stall":
                out.append(Fault(t, "stall", "random", seconds=rng.uniform(0.05, 1.0)))
            elif kind == "wipe":
                out.append(Fault(t, "wipe", rng.choice(("leader", "follower"))))
            else:  # join, leave, fail
                out.append(Fault(t, kind, "new" if kind == "join" else "random"))
        out.sort(key=lambda f: f.at)
        return [f for f in out if f.at < duration]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    nodes: int = 5
    duration: float = 10.0  # the fault phase, in virtual seconds
    quiet: float = 5.0  # after healing everything: liveness is required here
    tick: float = 0.1  # virtual seconds per Raft tick
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    lease_reads: bool = False
    codec: bool = True  # every message through the msgpack codec, as on the wire
    latency: Latency = field(default_factory=Latency)
    loss: float = 0.0
    duplicate: float = 0.0
    fsync: Latency = field(default_factory=lambda: Latency("uniform", 0.0005, 0.0002, 0.001))
    partition_count: int = 16
    replication_factor: int = 3
    copy_time: float = 0.2  # how long a node takes to copy a partition it was given
    fail_after: float = 0.0  # failure detection: the leader marks a node silent this long failed (0: off)
    workload: Workload = field(default_factory=Workload)
    faults: tuple[Fault, ...] = ()
    random: RandomFaults | None = None
    expect: Mapping[str, int] = field(default_factory=dict)  # counter -> at least this many

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], name: str = "") -> Scenario:
        allowed = {f.name for f in fields(cls)} | {"network", "disk"}
        _only(doc, allowed, "scenario")
        net = doc.get("network", {})
        _only(net, {"latency", "loss", "duplicate"}, "network")
        disk = doc.get("disk", {})
        _only(disk, {"fsync"}, "disk")
        faults = doc.get("faults", [])
        if not isinstance(faults, list):
            raise ScenarioError("faults must be a list of [[faults]] tables")
        expect = doc.get("expect", {})
        if not isinstance(expect, dict) or not all(type(v) is int and v >= 0 for v in expect.values()):
            raise ScenarioError(f"expect must map counter names to whole numbers, got {expect!r}")
        lease = doc.get("lease_reads", False)
        codec = doc.get("codec", True)
        if type(lease) is not bool or type(codec) is not bool:
            raise ScenarioError("lease_reads and codec must be true or false")
        scenario = cls(
            name=str(doc.get("name", name)) or "unnamed",
            description=str(doc.get("description", "")),
            nodes=_int(doc, "nodes", 5, 1, 50),
            duration=_number(doc, "duration", 10.0, 0.0, 86400.0),
            quiet=_number(doc, "quiet", 5.0, 0.0, 86400.0),
            tick=_number(doc, "tick", 0.1, 0.001, 10.0),
            election_ticks=_int(doc, "election_ticks", 10, 2, 10_000),
            heartbeat_ticks=_int(doc, "heartbeat_ticks", 1, 1, 10_000),
            lease_reads=lease,
            codec=codec,
            latency=Latency.from_dict(net.get("latency", {})),
            loss=_number(net, "loss", 0.0, 0.0, 1.0),
            duplicate=_number(net, "duplicate", 0.0, 0.0, 1.0),
            fsync=Latency.from_dict(disk.get("fsync", {"dist": "uniform", "mean": 0.0005, "low": 0.0002,
                                                       "high": 0.001})),
            partition_count=_int(doc, "partition_count", 16, 1, 4096),
            replication_factor=_int(doc, "replication_factor", 3, 1, 9),
            copy_time=_number(doc, "copy_time", 0.2, 0.0, 3600.0),
            fail_after=_number(doc, "fail_after", 0.0, 0.0, 3600.0),
            workload=Workload.from_dict(doc.get("workload", {})),
            faults=tuple(Fault.from_dict(f) for f in faults),
            random=RandomFaults.from_dict(doc["random"]) if "random" in doc else None,
            expect=dict(expect),
        )
        if scenario.election_ticks <= scenario.heartbeat_ticks:
            raise ScenarioError("election_ticks must be greater than heartbeat_ticks")
        return scenario

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{path}: cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
        try:
            return cls.from_dict(doc, name=path.stem)
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: {exc}") from None

    def with_faults(self, faults: list[Fault]) -> Scenario:
        """The same scenario with exactly these faults (no random ones): what shrinking produces."""
        return replace(self, faults=tuple(faults), random=None)

    def to_toml(self) -> str:
        """This scenario as a file that :meth:`load` reads back to an equal scenario."""
        top = {
            "name": self.name, "description": self.description, "nodes": self.nodes,
            "duration": self.duration, "quiet": self.quiet, "tick": self.tick,
            "election_ticks": self.election_ticks, "heartbeat_ticks": self.heartbeat_ticks,
            "lease_reads": self.lease_reads, "codec": self.codec,
            "partition_count": self.partition_count, "replication_factor": self.replication_factor,
            "copy_time": self.copy_time, "fail_after": self.fail_after,
        }
        lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
        lines += ["", "[network]", f"latency = {_toml_value(asdict(self.latency))}",
                  f"loss = {_toml_value(self.loss)}", f"duplicate = {_toml_value(self.duplicate)}"]
        lines += ["", "[disk]", f"fsync = {_toml_value(asdict(self.fsync))}"]
        lines += ["", "[workload]"] + [f"{k} = {_toml_value(v)}" for k, v in asdict(self.workload).items()]
        if self.expect:
            lines += ["", "[expect]"] + [f"{k} = {v}" for k, v in sorted(self.expect.items())]
        if self.random is not None:
            lines += ["", "[random]", f"rate = {_toml_value(self.random.rate)}",
                      f"kinds = {_toml_value(list(self.random.kinds))}", f"swarm = {_toml_value(self.random.swarm)}"]
        for fault in self.faults:
            lines += ["", "[[faults]]"] + [f"{k} = {_toml_value(v)}" for k, v in fault.to_dict().items()]
        return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")
