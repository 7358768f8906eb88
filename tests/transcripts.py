"""Golden transcripts: scripted steps through the Raft core and the cluster state, with their output.

A transcript (``tests/testdata/*.txt``, the format of etcd's datadriven tests) is a
sequence of blocks::

    # a comment (kept on rewrite)
    command arg key=value key=(a,b)
    ----
    the output the command must print

An :class:`Env` runs the commands against real :class:`~clusterkit.raft.RaftNode` objects on
:class:`~clusterkit.raft.MemoryStorage` (persist, sync, send, apply, advance: a driver's
Ready cycle, in the open) and against a :class:`~clusterkit.cluster_state.ClusterState`.
Messages wait in a queue per recipient until a ``deliver-msgs`` or ``stabilize`` hands them
over, so a transcript decides exactly what arrives where and when. Everything printed is
deterministic: seeded rngs, and nodes, queues and partitions in the order they were created.

``tests/test_transcripts.py`` compares each file's outputs with what the commands print now
and shows a unified diff; ``pytest --rewrite`` (or ``CLUSTERKIT_REWRITE=1``) writes what they
print back into the files instead, so a change of behaviour is a diff to review.

Commands (ids are node ids; ``N`` a number):

Raft
  add-nodes N [ids=(a,b)] [voters=(1,2,3)] [learners=()] [joining] [log=(1,1,2)] [term=T]
            [vote=ID] [commit=N] [<raft-config-field>=value ...]
      create N nodes (ids: ``ids`` or the next numbers), each on its own MemoryStorage, voters
      and learners as its bootstrap membership (``joining``: none, it waits for a leader),
      ``log`` the terms of entries 1.. it already holds, ``term``/``vote``/``commit`` its hard
      state. Any RaftConfig field may be set, with ``-`` for ``_`` (``pre-vote=false``);
      ``election``/``heartbeat`` are short for ``election-ticks``/``heartbeat-ticks``.
  campaign ID                  start an election now (no pre-vote, as RaftNode.campaign)
  tick ID [N]                  N ticks (default 1)
  tick-election ID             a follower: tick until its election timer fires; a leader:
                               one election timeout of ticks (a CheckQuorum period)
  tick-heartbeat ID            one heartbeat interval of ticks
  propose ID data              RaftNode.propose
  propose-conf-change ID add-voter|add-learner|remove NODE
  transfer-leadership ID to=NODE
  read-index ID context
  compact ID index [data]      take a snapshot of the state machine at ``index``
  process-ready ID...          handle each node's Readys until it has none (print them)
  deliver-msgs ID...           step each node with the messages queued for it
  stabilize [ID...]            process Readys and deliver messages until nothing moves
  isolate ID...                drop every message to or from these nodes (sent from now on,
                               or queued and not yet delivered)
  heal                         stop dropping
  raft-log ID...               the log each node holds
  status ID...                 role, term, commit... and, on a leader, each peer's progress

Cluster state
  state-bootstrap NODE [partitions=N] [rf=N]
  state-join NODE | state-fail NODE | state-leave NODE
  state-confirm all | state-confirm PARTITION NODE
  state-map                    nodes, and per partition: owners, holders, incoming, primary
"""

from __future__ import annotations

import dataclasses
import difflib
import random
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clusterkit.cluster_state import (
    ClusterConfig,
    ClusterState,
    NodeEvent,
    NodeInfo,
    PartitionChange,
    RebalanceEvent,
    bootstrap_command,
    confirm_command,
    fail_command,
    join_command,
    leave_command,
)
from clusterkit.raft import (
    AppendEntries,
    AppendResponse,
    CommitNotice,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    MemoryStorage,
    Message,
    Propose,
    RaftConfig,
    RaftError,
    RaftNode,
    ReadIndex,
    ReadIndexResponse,
    Ready,
    RequestVote,
    Role,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
    write_ready,
)
from clusterkit.raft.confchange import decode_entry

# ---------------------------------------------------------------------------- the file format


@dataclass
class Block:
    comments: list[str]  # lines (comments and blanks) before the command, kept as they are
    command: str
    expected: str
    line: int  # where the command is, for messages


def parse(text: str, name: str = "<transcript>") -> tuple[list[Block], list[str]]:
    """The blocks of a transcript, and the comment lines after the last one."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    blocks: list[Block] = []
    pending: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            pending.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"{name}:{i + 1}: expected '----' after the command {line!r}")
        start = i + 1
        i += 2
        out: list[str] = []
        while i < len(lines) and lines[i] != "":
            out.append(lines[i])
            i += 1
        i += 1  # the blank line that ends the block
        blocks.append(Block(pending, line, "\n".join(out), start))
        pending = []
    return blocks, pending


def render(blocks: list[Block], trailer: list[str]) -> str:
    parts: list[str] = []
    for b in blocks:
        parts.extend(b.comments)
        parts.extend([b.command, "----", b.expected, ""])
    parts.extend(trailer)
    text = "\n".join(parts)
    return text.rstrip("\n") + "\n"


def run_file(path: Path, rewrite: bool = False) -> str | None:
    """Run a transcript. Returns a unified diff of expected vs actual (None when they agree);
    with ``rewrite``, writes the actual output into the file and returns None."""
    text = path.read_text()
    blocks, trailer = parse(text, path.name)
    env = Env()
    actual = [
        dataclasses.replace(b, expected=env.run(b.command, f"{path.name}:{b.line}")) for b in blocks
    ]
    new = render(actual, trailer)
    if rewrite:
        if new != text:
            path.write_text(new)
        return None
    if new == text:
        return None
    return "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True), new.splitlines(keepends=True), f"{path.name} (expected)",
            f"{path.name} (actual)",
        )
    )


# ------------------------------------------------------------------------------- formatting


def fmt_data(data: bytes) -> str:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return "0x" + data.hex()
    if text.isprintable():
        return '"' + text.replace('"', '\\"') + '"'
    return "0x" + data.hex()


def fmt_ids(ids) -> str:
    return "(" + ",".join(ids) + ")"


def fmt_entry(e: Entry) -> str:
    head = f"{e.term}/{e.index}"
    if e.type == EntryType.NOOP:
        return head + " noop"
    if e.type == EntryType.CONF_CHANGE:
        cc, _ = decode_entry(e.data)
        return f"{head} {ConfChangeType(cc.op).name.lower().replace('_', '-')}({cc.node})"
    return head if not e.data else f"{head} {fmt_data(e.data)}"


def fmt_entries(entries: list[Entry]) -> str:
    return ", ".join(fmt_entry(e) for e in entries)


def fmt_msg(m: Message) -> str:
    head = f"{m.src}->{m.dst}"
    if isinstance(m, AppendEntries):
        s = f"{head} MsgApp term:{m.term} log:{m.log_term}/{m.index} commit:{m.commit}"
        return s + (f" entries:[{fmt_entries(m.entries)}]" if m.entries else "")
    if isinstance(m, AppendResponse):
        s = f"{head} MsgAppResp term:{m.term} index:{m.index}"
        if m.reject:
            s += f" rejected hint:{m.log_term}/{m.reject_hint}" if m.log_term else f" rejected hint:{m.reject_hint}"
        return s
    if isinstance(m, RequestVote):
        kind = "MsgPreVote" if m.pre_vote else "MsgVote"
        return f"{head} {kind} term:{m.term} log:{m.log_term}/{m.index}" + (" transfer" if m.transfer else "")
    if isinstance(m, VoteResponse):
        kind = "MsgPreVoteResp" if m.pre_vote else "MsgVoteResp"
        return f"{head} {kind} term:{m.term}" + (" rejected" if m.reject else "")
    if isinstance(m, Heartbeat):
        return f"{head} MsgHeartbeat term:{m.term} commit:{m.commit} round:{m.round}"
    if isinstance(m, HeartbeatResponse):
        return f"{head} MsgHeartbeatResp term:{m.term} round:{m.round}"
    if isinstance(m, CommitNotice):
        return f"{head} MsgCommit term:{m.term} commit:{m.commit}"
    if isinstance(m, Propose):
        return f"{head} MsgProp entries:[{', '.join(fmt_propose(e) for e in m.entries)}]"
    if isinstance(m, InstallSnapshot):
        end = m.offset + len(m.data)
        return (
            f"{head} MsgSnap term:{m.term} snap:{m.log_term}/{m.index} voters:{fmt_ids(m.voters)}"
            + (f" learners:{fmt_ids(m.learners)}" if m.learners else "")
            + f" bytes:{m.offset}-{end}/{m.size} {fmt_data(m.data)}"
        )
    if isinstance(m, SnapshotResponse):
        return f"{head} MsgSnapResp term:{m.term} index:{m.index} offset:{m.offset}" + (" done" if m.done else "")
    if isinstance(m, TimeoutNow):
        return f"{head} MsgTimeoutNow term:{m.term}"
    if isinstance(m, ReadIndex):
        return f"{head} MsgReadIndex term:{m.term} ctx:{fmt_data(m.context)}"
    if isinstance(m, ReadIndexResponse):
        return f"{head} MsgReadIndexResp term:{m.term} index:{m.index} ctx:{fmt_data(m.context)}"
    raise TypeError(f"unknown message {m!r}")


def fmt_propose(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE:
        cc, _ = decode_entry(e.data)
        return f"{ConfChangeType(cc.op).name.lower().replace('_', '-')}({cc.node})"
    return fmt_data(e.data)


def fmt_ready(rd: Ready, note: Callable[[Message], str] = lambda m: "") -> list[str]:
    out = []
    if rd.hard_state is not None:
        hs = rd.hard_state
        out.append(f"HardState term:{hs.term} vote:{hs.vote or '-'} commit:{hs.commit}")
    if rd.soft_state is not None:
        out.append(f"SoftState role:{rd.soft_state.role.value} leader:{rd.soft_state.leader or '-'}")
    if rd.snapshot is not None:
        meta = rd.snapshot.meta
        out.append(
            f"Snapshot: {meta.term}/{meta.index} voters:{fmt_ids(meta.conf.voters)}"
            + (f" learners:{fmt_ids(meta.conf.learners)}" if meta.conf.learners else "")
            + f" data:{fmt_data(rd.snapshot.data)}"
        )
    if rd.entries:
        out.append(f"Entries: {fmt_entries(rd.entries)}")
    if rd.compaction is not None:
        meta = rd.compaction.snapshot.meta
        out.append(f"Compaction: snapshot {meta.term}/{meta.index}, log dropped through {rd.compaction.compact_to}")
    if rd.committed_entries:
        out.append(f"Committed: {fmt_entries(rd.committed_entries)}")
    for rs in rd.read_states:
        out.append(f"ReadState: index:{rs.index} ctx:{fmt_data(rs.context)}")
    if rd.messages:
        out.append("Messages:")
        out.extend(f"  {fmt_msg(m)}{note(m)}" for m in rd.messages)
    return out


# ----------------------------------------------------------------------------- arguments


def parse_list(value: str) -> list[str]:
    if not (value.startswith("(") and value.endswith(")")):
        raise ValueError(f"expected a list like (1,2,3), got {value!r}")
    inner = value[1:-1].strip()
    return [v.strip() for v in inner.split(",")] if inner else []


@dataclass
class Args:
    pos: list[str]
    kw: dict[str, str]

    @classmethod
    def parse(cls, tokens: list[str]) -> Args:
        pos, kw = [], {}
        for t in tokens:
            if "=" in t and not t.startswith("="):
                k, v = t.split("=", 1)
                kw[k] = v
            else:
                pos.append(t)
        return cls(pos, kw)

    def take(self, key: str, default: str | None = None) -> str | None:
        return self.kw.pop(key, default)

    def done(self) -> None:
        if self.kw:
            raise ScriptError(f"unknown arguments: {', '.join(sorted(self.kw))}")


_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(RaftConfig)}
_CONFIG_ALIASES = {"election": "election_ticks", "heartbeat": "heartbeat_ticks"}


def config_value(name: str, value: str):
    default = getattr(RaftConfig(), name)
    if type(default) is bool:
        if value not in ("true", "false"):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value == "true"
    return int(value)


# ------------------------------------------------------------------------------ the driver


class ScriptError(Exception):
    """A transcript's command is malformed (unknown, bad arguments): the script is wrong."""


class Env:
    """The interaction environment: Raft nodes, their queues, and one cluster state."""

    def __init__(self) -> None:
        self.nodes: dict[str, RaftNode] = {}
        self.storages: dict[str, MemoryStorage] = {}
        self.applied: dict[str, list[Entry]] = {}
        self.inbox: dict[str, list[Message]] = {}  # per recipient, in send order
        self.isolated: list[str] = []
        self.state: ClusterState | None = None
        self.state_config: ClusterConfig | None = None
        self._handlers: dict[str, Callable[[Args], list[str]]] = {
            "add-nodes": self.add_nodes,
            "campaign": self.campaign,
            "tick": self.tick,
            "tick-election": self.tick_election,
            "tick-heartbeat": self.tick_heartbeat,
            "propose": self.propose,
            "propose-conf-change": self.propose_conf_change,
            "transfer-leadership": self.transfer_leadership,
            "read-index": self.read_index,
            "compact": self.compact,
            "process-ready": self.process_ready_cmd,
            "deliver-msgs": self.deliver_msgs_cmd,
            "stabilize": self.stabilize,
            "isolate": self.isolate,
            "heal": self.heal,
            "raft-log": self.raft_log,
            "status": self.status,
            "state-bootstrap": self.state_bootstrap,
            "state-join": self.state_join,
            "state-fail": self.state_fail,
            "state-leave": self.state_leave,
            "state-confirm": self.state_confirm,
            "state-map": self.state_map,
        }

    def run(self, command: str, where: str = "") -> str:
        tokens = shlex.split(command)
        handler = self._handlers.get(tokens[0])
        if handler is None:
            raise ScriptError(f"{where}: unknown command {tokens[0]!r}")
        args = Args.parse(tokens[1:])
        try:
            out = handler(args)
        except RaftError as exc:  # the core refused: that is output, not a broken script
            out = [f"error: {type(exc).__name__}: {exc}"]
        except (ScriptError, ValueError, KeyError, IndexError) as exc:
            raise ScriptError(f"{where}: {command!r}: {exc}") from None
        text = "\n".join(out)
        return text if text.strip() else "ok"

    # -- helpers ---------------------------------------------------------------
    def node(self, nid: str) -> RaftNode:
        if nid not in self.nodes:
            raise ValueError(f"no node {nid!r}")
        return self.nodes[nid]

    def ids(self, args: Args) -> list[str]:
        ids = args.pos or list(self.nodes)
        for nid in ids:
            self.node(nid)
        return ids

    @staticmethod
    def brief(n: RaftNode) -> str:
        return f"{n.id}: {n.role.value} term:{n.term} leader:{n.leader or '-'}"

    def _changed(self, n: RaftNode, before: str) -> list[str]:
        after = self.brief(n)
        return [after if after == before else f"{before} -> {after.split(': ', 1)[1]}"]

    # -- nodes -----------------------------------------------------------------
    def add_nodes(self, args: Args) -> list[str]:
        count = int(args.pos[0])
        ids = parse_list(args.take("ids")) if "ids" in args.kw else None
        if ids is not None and len(ids) != count:
            raise ValueError(f"ids names {len(ids)} nodes, not {count}")
        voters = parse_list(args.take("voters", "()"))
        learners = parse_list(args.take("learners", "()"))
        joining = args.take("joining") is not None or "joining" in args.pos[1:]
        terms = [int(t) for t in parse_list(args.take("log", "()"))]
        term = int(args.take("term", "0"))
        vote = args.take("vote")
        commit = int(args.take("commit", "0"))
        cfg = {}
        for key in list(args.kw):
            name = _CONFIG_ALIASES.get(key, key.replace("-", "_"))
            if name in _CONFIG_FIELDS:
                cfg[name] = config_value(name, args.take(key))
        args.done()
        config = RaftConfig(**cfg)
        out = []
        for k in range(count):
            nid = ids[k] if ids is not None else str(len(self.nodes) + 1)
            if nid in self.nodes:
                raise ValueError(f"node {nid} exists already")
            storage = MemoryStorage(None if joining else ConfState(tuple(voters), tuple(learners)))
            if terms:
                storage.append([Entry(t, i + 1) for i, t in enumerate(terms)])
            if term or vote or commit:
                storage.set_hard_state(HardState(term=max(term, terms[-1] if terms else 0), vote=vote, commit=commit))
            storage.sync()
            node = RaftNode(nid, storage, config, rng=random.Random(f"transcript-{nid}"), joining=joining)
            self.nodes[nid], self.storages[nid], self.applied[nid] = node, storage, []
            self.inbox.setdefault(nid, [])
            log = f" log:{node.log.last_term()}/{node.log.last_index()}" if node.log.last_index() else ""
            members = f"voters:{fmt_ids(node.voters)}"
            if node.learners:
                members += f" learners:{fmt_ids(node.learners)}"
            out.append(f"{nid}: term:{node.term}{log} {members if node.voters else 'joining'}")
        return out

    def campaign(self, args: Args) -> list[str]:
        n = self.node(args.pos[0])
        before = self.brief(n)
        n.campaign()
        return self._changed(n, before)

    def _tick(self, n: RaftNode, count: int) -> None:
        for _ in range(count):
            n.tick()

    def tick(self, args: Args) -> list[str]:
        n = self.node(args.pos[0])
        before = self.brief(n)
        self._tick(n, int(args.pos[1]) if len(args.pos) > 1 else 1)
        return self._changed(n, before)

    def tick_election(self, args: Args) -> list[str]:
        n = self.node(args.pos[0])
        before = self.brief(n)
        if n.role is Role.LEADER:
            self._tick(n, n.config.election_ticks)
        else:
            for _ in range(2 * n.config.election_ticks):
                role, term = n.role, n.term
                n.tick()
                if n.role is not role or n.term != term or n.msgs:
                    break
        return self._changed(n, before)

    def tick_heartbeat(self, args: Args) -> list[str]:
        n = self.node(args.pos[0])
        before = self.brief(n)
        self._tick(n, n.config.heartbeat_ticks)
        return self._changed(n, before)

    def propose(self, args: Args) -> list[str]:
        n = self.node(args.pos[0])
        index = n.propose(args.pos[1].encode())
        return [f"{n.id}: proposed at index {index}" if index is not None else f"{n.id}: forwarded to {n.leader}"]

    def propose_conf_change(self, args: Args) -> list[str]:
        n = self.node(args.pos[0])
        op = {"add-voter": ConfChangeType.ADD_VOTER, "add-learner": ConfChangeType.ADD_LEARNER,
              "remove": ConfChangeType.REMOVE}[args.pos[1]]
        index = n.propose_conf_change(ConfChange(op, args.pos[2]))
        if index is None:
            return [f"{n.id}: forwarded to {n.leader}"]
        return [f"{n.id}: proposed at index {index}, now voters:{fmt_ids(n.voters)} learners:{fmt_ids(n.learners)}"]

    def transfer_leadership(self, args: Args) -> list[str]:
        n = self.node(args.pos[0])
        to = n.transfer_leadership(args.take("to"))
        args.done()
        return [f"{n.id}: transferring leadership to {to}"]

    def read_index(self, args: Args) -> list[str]:
        n = self.node(args.pos[0])
        n.read_index(args.pos[1].encode())
        return []

    def compact(self, args: Args) -> list[str]:
        n = self.node(args.pos[0])
        index = int(args.pos[1])
        data = args.pos[2].encode() if len(args.pos) > 2 else b""
        snap = n.compact(index, data)
        return [f"{n.id}: snapshot {snap.meta.term}/{snap.meta.index}, log now starts at {n.log.offset + 1}"]

    # -- the Ready cycle and the network -------------------------------------------
    def cut(self, m: Message) -> bool:
        """An isolated node's messages are dropped, when sent and (if queued before) when delivered."""
        return m.src in self.isolated or m.dst in self.isolated

    def process_ready(self, nid: str) -> list[str]:
        """Handle the node's Readys until it has none: persist, sync, queue the messages, apply,
        advance (a driver's cycle, synchronous)."""
        n = self.nodes[nid]
        out: list[str] = []
        while n.has_ready():
            rd = n.ready()
            out.append(f"> {nid} handling Ready")
            out.extend(f"  {line}" for line in fmt_ready(rd, lambda m: " (dropped)" if self.cut(m) else ""))
            write_ready(self.storages[nid], rd)
            self.storages[nid].sync()
            for m in rd.messages:
                if not self.cut(m):
                    self.inbox.setdefault(m.dst, []).append(m)
            self.applied[nid].extend(rd.committed_entries)
            n.advance(rd)
        return out

    def deliver(self, nid: str) -> list[str]:
        msgs, self.inbox[nid] = self.inbox.get(nid, []), []
        if not msgs:
            return []
        out = [f"> {nid} receiving messages"]
        n = self.nodes[nid]
        for m in msgs:
            if self.cut(m):
                out.append(f"  {fmt_msg(m)} (dropped)")
                continue
            out.append(f"  {fmt_msg(m)}")
            try:
                n.step(m)
            except RaftError as exc:
                out.append(f"  error: {type(exc).__name__}: {exc}")
        return out

    def process_ready_cmd(self, args: Args) -> list[str]:
        return [line for nid in self.ids(args) for line in self.process_ready(nid)]

    def deliver_msgs_cmd(self, args: Args) -> list[str]:
        return [line for nid in self.ids(args) for line in self.deliver(nid)]

    def stabilize(self, args: Args) -> list[str]:
        ids = self.ids(args)
        out: list[str] = []
        for _ in range(10_000):
            moved = False
            for nid in ids:
                lines = self.process_ready(nid)
                out.extend(lines)
                moved = moved or bool(lines)
            for nid in ids:
                lines = self.deliver(nid)
                out.extend(lines)
                moved = moved or bool(lines)
            if not moved:
                return out
        raise AssertionError("stabilize did not settle in 10,000 rounds")

    def isolate(self, args: Args) -> list[str]:
        for nid in args.pos:
            self.node(nid)
            if nid not in self.isolated:
                self.isolated.append(nid)
        return [f"isolated: {fmt_ids(self.isolated)}"]

    def heal(self, args: Args) -> list[str]:
        self.isolated = []
        return []

    # -- inspection ---------------------------------------------------------------------
    def raft_log(self, args: Args) -> list[str]:
        out = []
        for nid in self.ids(args):
            log = self.nodes[nid].log
            head = f"{nid}:"
            if log.offset:
                head += f" [snapshot {log.offset_term}/{log.offset}]"
            out.append(f"{head} {fmt_entries(log.entries)}".rstrip())
        return out

    def status(self, args: Args) -> list[str]:
        out = []
        for nid in self.ids(args):
            n = self.nodes[nid]
            s = n.status()
            line = (
                f"{nid}: {s['role']} term:{s['term']} vote:{s['vote'] or '-'} leader:{s['leader'] or '-'}"
                f" commit:{s['commit']} applied:{s['applied']} last:{s['last_index']}"
                f" voters:{fmt_ids(s['voters'])}"
            )
            if s["learners"]:
                line += f" learners:{fmt_ids(s['learners'])}"
            if s["snapshot_index"]:
                line += f" snapshot:{s['snapshot_index']}"
            out.append(line)
            if n.role is Role.LEADER:
                for peer, pr in s["progress"].items():
                    if peer != nid:
                        kind = " learner" if pr["learner"] else ""
                        out.append(f"  {peer}: match:{pr['match']} next:{pr['next']} {pr['state']}{kind}")
        return out

    # -- cluster state ---------------------------------------------------------------------
    def _state(self) -> ClusterState:
        if self.state is None:
            raise ValueError("state-bootstrap first")
        return self.state

    def _apply(self, data: bytes) -> list[str]:
        st = self._state()
        before = st.epoch
        res = st.apply(data)
        if not res.ok:
            return [f"refused: {res.error}"]
        if res.epoch == before and not res.events:
            return [f"no change (epoch:{res.epoch})"]
        return [f"epoch:{res.epoch}"] + [fmt_event(e) for e in res.events]

    def state_bootstrap(self, args: Args) -> list[str]:
        cfg = ClusterConfig(
            partition_count=int(args.take("partitions", "8")), replication_factor=int(args.take("rf", "2"))
        )
        args.done()
        self.state, self.state_config = ClusterState(), cfg
        return self._apply(bootstrap_command(cfg, NodeInfo(args.pos[0])))

    def state_join(self, args: Args) -> list[str]:
        self._state()
        return self._apply(join_command(self.state_config, NodeInfo(args.pos[0])))

    def state_fail(self, args: Args) -> list[str]:
        return self._apply(fail_command(args.pos[0]))

    def state_leave(self, args: Args) -> list[str]:
        return self._apply(leave_command(args.pos[0]))

    def state_confirm(self, args: Args) -> list[str]:
        st = self._state()
        if args.pos == ["all"]:
            out = []
            for p in range(len(st.owners)):
                for o in st.incoming(p):
                    out.append(f"confirm p{p} {o}:")
                    out.extend(f"  {line}" for line in self._apply(confirm_command(p, o, st.changed[p])))
            return out or ["nothing incoming"]
        return self._apply(confirm_command(int(args.pos[0]), args.pos[1]))

    def state_map(self, args: Args) -> list[str]:
        st = self._state()
        nodes = " ".join(f"{n}:{st.nodes[n].status}" for n in sorted(st.nodes))
        out = [f"epoch:{st.epoch} nodes: {nodes}"]
        for p in range(len(st.owners)):
            line = f"p{p}: owners:{fmt_ids(st.owners[p])} holders:{fmt_ids(st.holders[p])}"
            line += f" primary:{st.acting_primary(p)}"
            if st.incoming(p):
                line += f" incoming:{fmt_ids(st.incoming(p))}"
            if st.failed_holders(p):
                line += f" failed:{fmt_ids(st.failed_holders(p))}"
            out.append(line)
        if st.rebalance_reason is not None:
            out.append(f"rebalancing: {st.rebalance_reason}, {st.rebalance_moves} copies")
        return out


def fmt_event(e) -> str:
    if isinstance(e, NodeEvent):
        return f"node {e.kind}: {e.node.id}"
    if isinstance(e, RebalanceEvent):
        return f"rebalance {e.kind}: {e.reason}, {e.moves} copies"
    if isinstance(e, PartitionChange):
        src = ",".join(n.id for n in e.copy_from)
        copy = f"copy ({src}) -> {e.copy_to.id}" if e.copy_to is not None else "no copy"
        return f"p{e.number}: {copy}, primary {e.old_primary}->{e.new_primary}"
    raise TypeError(f"unknown event {e!r}")
