"""Feeding the Raft safety monitor from node hosts, the same way for every driver.

The monitor (:mod:`clusterkit.check.raft_safety`) is a pure checker of
observations; this is the glue that reads a host after it has drained its
Ready batches (everything synced) and reports what the checker needs: a new
lifetime's restored hard state, the live term, the persisted hard state,
leadership, newly committed entries, leader completeness, and votes granted
in the messages the host sends.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..check.raft_safety import RaftSafetyMonitor
from ..raft.messages import HardState, Message, VoteResponse
from ..raft.ready import Role
from .node import NodeHost


class SafetyObserver:
    def __init__(self, monitor: RaftSafetyMonitor) -> None:
        self.monitor = monitor
        self._commit_reported: dict[str, int] = {}  # per node: last committed index shown, this lifetime
        self._lifetime_seen: dict[str, int] = {}
        self._hard_state_reported: dict[str, HardState] = {}

    def observe(self, host: NodeHost) -> None:
        """Report ``host``'s state; call it when the host has no Ready outstanding."""
        raft = host.raft
        if raft is None:
            return
        mon, nid = self.monitor, host.id
        if host.incarnation != self._lifetime_seen.get(nid, 1):
            # First look at this lifetime: what it restored from storage. Its committed entries are
            # shown again (a restarted node re-reports what it reloaded).
            self._lifetime_seen[nid] = host.incarnation
            self._commit_reported[nid] = 0
            mon.restarted(nid, raft.term, raft.vote)
        mon.term_seen(nid, raft.term)
        storage = host.storage
        if not getattr(storage, "unsynced_writes", 0):
            hs = storage.initial_state()[0]
            if hs is not self._hard_state_reported.get(nid):
                self._hard_state_reported[nid] = hs
                mon.persisted(nid, hs.term, hs.vote)
        log = raft.log
        first_new = max(log.offset, self._commit_reported.get(nid, 0)) + 1
        if log.committed >= first_new:
            mon.committed_seen(nid, raft.term, log.slice(first_new, log.committed + 1))
            self._commit_reported[nid] = log.committed
        if raft.role is Role.LEADER:
            mon.leader_seen(nid, raft.term)
            mon.check_leader_completeness(nid, raft.term, log.offset, log.entries)

    def forget(self, node_id: str) -> None:
        """``node_id`` lost its storage: what comes back under its id is reported afresh."""
        self._commit_reported.pop(node_id, None)
        self._hard_state_reported.pop(node_id, None)

    def sent(self, messages: Iterable[Message]) -> None:
        """Messages a host is about to send (after its sync): granted votes are promises."""
        for m in messages:
            if type(m) is VoteResponse and not m.reject and not m.pre_vote:
                self.monitor.vote_granted(m.src, m.term, m.dst)

    def check_logs(self, hosts: Iterable[NodeHost]) -> None:
        self.monitor.check_log_matching(
            {h.id: (h.raft.log.offset, h.raft.log.entries) for h in hosts if h.raft is not None}
        )
