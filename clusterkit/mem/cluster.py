"""ClusterKit facades over the deterministic in-memory Raft network.

The smallest complete driver: every node is a node host (from the network)
whose state machine is that node's :class:`ClusterKit`; time is rounds of
ticks, and the same seed gives the same run. The nodes named at construction
form the Raft group; ``add_node`` brings in another one as a Raft learner
(the leader promotes it once it has caught up, up to ``max_voters``). A node
takes part in the *cluster state* once its join command commits. Raft
snapshots hold the cluster state: a restarted node, or one too far behind,
restores it into the same facade and applies only the entries after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..cluster_state import ApplyResult
from ..facade import ClusterKit, Hooks, Options
from ..raft.errors import NotLeader, ProposalDropped, RaftError
from ..raft.ready import RaftConfig
from .network import MemNetwork


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
        hooks: Callable[[str], Hooks] | None = None,
    ) -> None:
        ids = sorted(node_ids)
        self._options = options
        self._hooks = hooks or (lambda nid: Hooks())
        # One facade per node for the node's whole life: restarts and snapshots restore into it.
        self.kits: dict[str, ClusterKit] = {nid: self._new_kit(nid) for nid in ids}
        self.net = MemNetwork(ids, seed=seed, config=raft_config, machine=lambda nid: self.kits[nid])

    def _new_kit(self, nid: str) -> ClusterKit:
        return ClusterKit(self._options(nid), hooks=self._hooks(nid))

    # ------------------------------------------------------------ driving
    def round(self) -> None:
        """One unit of time: every node ticks (its Raft node and its facade), every message is delivered."""
        self.net.tick_all()
        self.net.deliver_all()

    def run_until(self, cond: Callable[[], bool], max_rounds: int = 300) -> bool:
        for _ in range(max_rounds):
            if cond():
                return True
            self.round()
        return cond()

    def submit(self, nid: str, command: bytes, max_rounds: int = 300) -> ApplyResult:
        """Send ``command`` as ``nid`` would: to the leader it knows, which proposes it; run until
        that entry has applied on ``nid`` and on every node up; its result.

        The result belongs to the entry this call proposed (by index and term), never to another
        one with the same bytes. A proposal lost to a leader change is proposed again (the
        cluster-state commands are idempotent).
        """
        rounds = 0
        while rounds < max_rounds:
            host = self.net.nodes[nid]
            leader = host.leader if host.up else None
            if leader is None or not self.net.nodes[leader].up:
                self.round()
                rounds += 1
                continue
            try:
                proposal = self.net.nodes[leader].propose(command)
            except (NotLeader, ProposalDropped):
                self.round()
                rounds += 1
                continue
            self.net.process(leader)
            while not proposal.done and rounds < max_rounds:
                self.round()
                rounds += 1
            if proposal.ok:
                self.run_until(lambda: all(self.net.nodes[n].applied_index >= proposal.index for n in self.up()), 100)
                return proposal.result
        raise TimeoutError(f"command from {nid} did not apply within {max_rounds} rounds")

    def up(self) -> list[str]:
        return self.net.up()

    def add_node(self, nid: str, max_rounds: int = 300) -> None:
        """A new, empty node: it joins the Raft group as a learner (its address in the change) and
        catches up (by snapshot if the log was compacted). Then ``start(nid)`` submits its
        cluster-state join."""
        if nid in self.kits:
            raise ValueError(f"{nid} is already in the cluster")
        self.kits[nid] = self._new_kit(nid)
        self.net.add_node(nid)
        address = self.kits[nid].options.raft_addr.encode()
        for _ in range(max_rounds):
            leader = self.net.leader()
            raft = self.net.nodes[leader].raft if leader is not None else None
            if raft is not None:
                if nid in raft.voters + raft.learners:
                    if self.run_until(lambda: self.net.nodes[nid].applied_index >= raft.log.committed, max_rounds):
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
