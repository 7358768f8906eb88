"""ClusterKit facades over the deterministic in-memory Raft network.

The smallest complete driver: each node's committed entries are applied to
its facade (which runs the hooks), commands are proposed through Raft, and
time is rounds of ticks. Same seed, same run. The nodes named at
construction form the Raft group; ``add_node`` brings in another one as a
Raft learner (the leader promotes it once it has caught up, up to
``max_voters``). A node takes part in the *cluster state* once its join
command commits. Raft snapshots hold the cluster state: a restarted node,
or one too far behind, restores it and applies only the entries after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..cluster_state import ApplyResult
from ..facade import ClusterKit, Options
from .network import MemNetwork
from ..raft.errors import RaftError
from ..raft.messages import Entry, EntryType
from ..raft.ready import RaftConfig


def default_options(node_id: str) -> Options:
    number = node_id.rsplit("-", 1)[-1]
    port = 8080 + (int(number) - 1 if number.isdigit() else 0)
    return Options(node_id=node_id, http_addr=f"127.0.0.1:{port}")


class MemCluster:
    def __init__(
        self,
        node_ids: Iterable[str],
        seed: int = 0,
        options: Callable[[str], Options] = default_options,
        raft_config: RaftConfig | None = None,
    ) -> None:
        ids = sorted(node_ids)
        self.net = MemNetwork(
            ids,
            seed=seed,
            config=raft_config,
            on_apply=self._on_apply,
            snapshot_of=lambda nid: self.kits[nid].state.snapshot(),
            restore=self._restore,
        )
        self._options = options
        self.kits: dict[str, ClusterKit] = {nid: self._new_kit(nid) for nid in ids}
        self.results: dict[str, list[ApplyResult]] = {nid: [] for nid in ids}
        self.commands: dict[str, list[bytes]] = {nid: [] for nid in ids}  # what each result answers

    def _new_kit(self, nid: str) -> ClusterKit:
        return ClusterKit(self._options(nid), propose=lambda data, nid=nid: self.net.propose(nid, data))

    def _on_apply(self, nid: str, entry: Entry) -> None:
        if entry.type == EntryType.NORMAL and entry.data:
            self.commands[nid].append(entry.data)
            self.results[nid].append(self.kits[nid].apply(entry.data))

    def _restore(self, nid: str, snapshot: bytes) -> None:
        # A restart or a snapshot from the leader: a fresh facade from the snapshot (if any); the
        # entries after it are then re-applied. Hooks registered on the old facade carry over and
        # fire for those entries again (at-least-once: ``event.epoch`` tells what was seen).
        old = self.kits[nid]
        kit = self._new_kit(nid)
        kit._hooks = old._hooks
        if snapshot:
            kit.restore(snapshot)
        self.kits[nid] = kit

    # ------------------------------------------------------------ driving
    def round(self) -> None:
        """One unit of time: every node ticks, every message is delivered."""
        self.net.tick_all()
        self.net.deliver_all()
        leader = self.net.leader()
        for nid, kit in self.kits.items():
            kit.is_leader = nid == leader
            if self.net.nodes[nid].up:
                kit.tick()
        self.net.deliver_all()

    def run_until(self, cond: Callable[[], bool], max_rounds: int = 300) -> bool:
        for _ in range(max_rounds):
            if cond():
                return True
            self.round()
        return cond()

    def submit(self, nid: str, command: bytes, max_rounds: int = 300) -> ApplyResult:
        """Propose ``command`` from ``nid`` and run until it has applied there; its result.

        Re-proposes when a leader change loses it (commands are idempotent).
        """
        seen = len(self.results[nid])
        rounds = 0
        while rounds < max_rounds:
            self.net.propose(nid, command)
            for _ in range(40):
                self.round()
                rounds += 1
                for data, result in zip(self.commands[nid][seen:], self.results[nid][seen:], strict=True):
                    if data == command:
                        self.run_until(lambda: all(self._caught_up(n) for n in self.up()), 100)
                        return result
        raise TimeoutError(f"command from {nid} did not apply within {max_rounds} rounds")

    def _caught_up(self, nid: str) -> bool:
        leader = self.net.leader()
        if leader is None:
            return False
        lead = self.net.nodes[leader].raft
        me = self.net.nodes[nid].raft
        return lead is not None and me is not None and me.log.applied >= lead.log.committed

    def up(self) -> list[str]:
        return self.net.up()

    def add_node(self, nid: str, max_rounds: int = 300) -> None:
        """A new, empty node: it joins the Raft group as a learner and catches up (by snapshot if
        the log was compacted). Then ``start(nid)`` submits its cluster-state join."""
        if nid in self.kits:
            raise ValueError(f"{nid} is already in the cluster")
        self.kits[nid] = self._new_kit(nid)
        self.results[nid] = []
        self.commands[nid] = []
        self.net.add_node(nid)
        address = self.kits[nid].options.raft_addr.encode()
        for _ in range(max_rounds):
            leader = self.net.leader()
            raft = self.net.nodes[leader].raft if leader is not None else None
            if raft is not None:
                if nid in raft.voters + raft.learners:
                    if self.run_until(lambda: self._caught_up(nid), max_rounds):
                        return
                    break
                try:
                    raft.add_learner(nid, context=address)
                except RaftError:
                    pass  # e.g. another change in flight: try again next round
                self.net.process(leader)
            self.round()
        raise TimeoutError(f"{nid} did not join the Raft group within {max_rounds} rounds")

    def start(self, nid: str) -> ApplyResult:
        """Bootstrap (first node) or join, as the node's options say."""
        kit = self.kits[nid]
        command = kit.bootstrap_command() if kit.options.bootstrap else kit.join_command()
        return self.submit(nid, command)

    def elect(self) -> str:
        return self.net.elect()
