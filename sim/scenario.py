"""Scenarios as plain data: cluster shape, network and disk, workload, faults, expectations.

A scenario file is TOML (``scenarios/*.toml``); it knows nothing of which
world runs it. Faults are a list of timed, named faults, either scripted in
the file or generated from the run's seed (``[random]``), and either way
printable, replayable and shrinkable. Everything is validated on load: a bad
field is a :class:`ScenarioError` naming it.
"""

from __future__ import annotations

import random
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from clusterkit.kv.strategies import STRATEGIES

from .faults import DEFAULT_RANDOM, Fault, check_schedule, kind_of, load_fault, random_kinds
from .fields import flag, number, only, whole
from .network import Latency, ScenarioError

__all__ = ["Fault", "RandomFaults", "Scenario", "Workload"]


@dataclass(frozen=True)
class Workload:
    clients: int = 3
    rate: float = 50.0  # operations per virtual second, all clients together
    keys: int = 3
    write_ratio: float = 0.5
    timeout: float = 1.0  # a client gives up after this long: info for a write, fail for a read
    # "": registers replicated through Raft; a name in clusterkit.kv.strategies.STRATEGIES: the KV store
    # (clusterkit.kv) with that strategy, its clients, and its migrations doing the copies
    kv: str = ""

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Workload:
        only(doc, {f.name for f in fields(cls)}, "workload")
        kv = doc.get("kv", "")
        if kv not in ("", *STRATEGIES):
            raise ScenarioError(f"workload kv must be one of {', '.join(STRATEGIES)}, got {kv!r}")
        return cls(
            kv=kv,
            clients=whole(doc, "clients", 3, 0, 1000),
            rate=number(doc, "rate", 50.0, 0.0, 1e6),
            keys=whole(doc, "keys", 3, 1, 10**6),
            write_ratio=number(doc, "write_ratio", 0.5, 0.0, 1.0),
            timeout=number(doc, "timeout", 1.0, 0.001, 3600.0),
        )


@dataclass(frozen=True)
class RandomFaults:
    """Faults drawn from the seed: ``rate`` per virtual second of the fault phase, kinds weighted
    by ``kinds``; with ``swarm``, each seed first draws its own subset of kinds and rate (as
    FoundationDB's and TigerBeetle's swarm testing do), so rare mixtures get reached."""

    rate: float = 0.5
    kinds: tuple[str, ...] = DEFAULT_RANDOM
    swarm: bool = True

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RandomFaults:
        only(doc, {"rate", "kinds", "swarm"}, "random")
        kinds = doc.get("kinds", DEFAULT_RANDOM)
        drawn = random_kinds()
        if (not isinstance(kinds, (list, tuple)) or not kinds
                or [k for k in kinds if not isinstance(k, str) or k not in drawn]):
            raise ScenarioError(f"random kinds must be among {', '.join(drawn)}, got {kinds!r}")
        return cls(rate=number(doc, "rate", 0.5, 0.0, 100.0), kinds=tuple(kinds),
                   swarm=flag(doc, "swarm", True))

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
            out += kind_of(rng.choice(kinds)).draw(rng, t)
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
    # A machine profile (profiles/NAME.toml, from `clusterkit sim calibrate`): its [network] latency
    # and [disk] fsync, where the scenario sets none of its own.
    profile: str = ""

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], name: str = "", profiles_dir: Path | None = None) -> Scenario:
        allowed = {f.name for f in fields(cls)} | {"network", "disk"}
        only(doc, allowed, "scenario")
        profile = doc.get("profile", "")
        if type(profile) is not str:
            raise ScenarioError(f"profile must be a profile's name, got {profile!r}")
        if profile:
            doc = _with_profile(doc, profile, profiles_dir)
        net = doc.get("network", {})
        only(net, {"latency", "loss", "duplicate"}, "network")
        disk = doc.get("disk", {})
        only(disk, {"fsync"}, "disk")
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
            nodes=whole(doc, "nodes", 5, 1, 50),
            duration=number(doc, "duration", 10.0, 0.0, 86400.0),
            quiet=number(doc, "quiet", 5.0, 0.0, 86400.0),
            tick=number(doc, "tick", 0.1, 0.001, 10.0),
            election_ticks=whole(doc, "election_ticks", 10, 2, 10_000),
            heartbeat_ticks=whole(doc, "heartbeat_ticks", 1, 1, 10_000),
            lease_reads=lease,
            codec=codec,
            latency=Latency.from_dict(net.get("latency", {})),
            loss=number(net, "loss", 0.0, 0.0, 1.0),
            duplicate=number(net, "duplicate", 0.0, 0.0, 1.0),
            fsync=Latency.from_dict(disk.get("fsync", {"dist": "uniform", "mean": 0.0005, "low": 0.0002,
                                                       "high": 0.001})),
            partition_count=whole(doc, "partition_count", 16, 1, 4096),
            replication_factor=whole(doc, "replication_factor", 3, 1, 9),
            copy_time=number(doc, "copy_time", 0.2, 0.0, 3600.0),
            fail_after=number(doc, "fail_after", 0.0, 0.0, 3600.0),
            workload=Workload.from_dict(doc.get("workload", {})),
            faults=tuple(_fault(i, f) for i, f in enumerate(faults)),
            random=RandomFaults.from_dict(doc["random"]) if "random" in doc else None,
            expect=dict(expect),
            profile=profile,
        )
        if scenario.election_ticks <= scenario.heartbeat_ticks:
            raise ScenarioError("election_ticks must be greater than heartbeat_ticks")
        check_schedule(scenario.faults, scenario.nodes)
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
            return cls.from_dict(doc, name=path.stem, profiles_dir=path.resolve().parent.parent / "profiles")
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
        if self.profile:  # (its values are written out below too: the file stands without it)
            top["profile"] = self.profile
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


PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _with_profile(doc: Mapping[str, Any], name: str, directory: Path | None) -> dict[str, Any]:
    """``doc`` with the profile's [network] latency and [disk] fsync where it has none of its own."""
    if not PROFILE_NAME.fullmatch(name):
        raise ScenarioError(f"profile must be a name (letters, digits, . _ -), got {name!r}")
    path = (directory or Path(__file__).resolve().parents[1] / "profiles") / f"{name}.toml"
    try:
        prof = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"profile {name!r}: cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"profile {name!r}: {path} is not valid TOML: {exc}") from None
    only(prof, {"network", "disk"}, f"profile {name!r}")
    out = dict(doc)
    for table, key in (("network", "latency"), ("disk", "fsync")):
        given = prof.get(table, {})
        if not isinstance(given, dict):
            raise ScenarioError(f"profile {name!r}: [{table}] must be a table")
        only(given, {key}, f"profile {name!r} [{table}]")
        if key in given and key not in doc.get(table, {}):
            out[table] = {**doc.get(table, {}), key: given[key]}
    return out


def _fault(i: int, doc: Any) -> Fault:
    if not isinstance(doc, Mapping):
        raise ScenarioError(f"faults[{i}] must be a table, got {doc!r}")
    return load_fault(doc)


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
