"""What every KV protocol of one node shares: who it is, its data, its map, its clock and its outbox.

**The fence.** Every request about a partition carries the partition's epoch as the sender sees
it (the cluster epoch at which that partition's owners or holders last changed). A copy serves it
only at the same epoch: an older one is refused ``stale`` (the sender refreshes its map and goes
on), a newer one ``behind`` (this node hasn't applied that change yet; the sender asks again).
So once a copy has served a migration batch at a new placement it refuses every write made against
the old one, and a new owner's copy, merged from a read quorum of complete holders, holds every
write that completed before.
"""

from __future__ import annotations

from itertools import count
from typing import Any

from clusterkit.facade import ClusterKit

from .config import ServerConfig
from .data import KVData
from .dedup import RequestLog
from .messages import Message, Refused, Result
from .operation import Outbound
from .quorum import Placement, Quorums
from .stats import Stats


class ServerContext:
    """One node's shared parts. Request ids come from one counter for every protocol, and an
    answer routes back to the protocol that asked by ``routes`` (request id -> (kind, key))."""

    def __init__(self, kit: ClusterKit, data: KVData, config: ServerConfig, incarnation: int) -> None:
        if type(incarnation) is not int or not 0 <= incarnation < 1 << 31:
            raise ValueError(f"incarnation must be an integer in [0, 2**31), got {incarnation!r}")
        self.kit = kit
        self.me = kit.my_node_id()
        self.data = data
        self.config = config
        self.quorums: Quorums = config.policy.quorums(kit.options.replication_factor, config.w, config.r)
        self.stats = Stats()
        self.incarnation = incarnation
        # Never repeated across restarts: peers remember answers by sender and request id.
        self.rids = count((incarnation << 32) + 1)
        self.writes = count(1)  # this node's writer tags: versions never collide
        self.ticks = 0
        self.routes: dict[int, tuple[str, int]] = {}
        self.requests = RequestLog()
        self.outbox: list[Outbound] = []
        # With ``answer_early`` (a driver that calls data.mark_synced and take_early): answers that
        # report only durable data (a Query's Found when the key's last change is synced) go here,
        # to be sent without waiting for the next sync. Off, everything goes through the outbox.
        self.answer_early = False
        self.early: list[Outbound] = []
        self.local: list[Message] = []  # to ourselves: handled at once, answered through the outbox
        self._placements: dict[int, Placement] = {}
        self._placements_epoch = -1
        self._hash_for: Any = None  # the cluster config _number belongs to
        self._number: Any = None

    def next_rid(self) -> int:
        return next(self.rids)

    # ------------------------------------------------------------ the map
    def placement(self, partition: int) -> Placement:
        """Where ``partition`` lives in this node's map (cached until the map's epoch moves)."""
        epoch = self.kit.state.epoch
        if epoch != self._placements_epoch:
            self._placements, self._placements_epoch = {}, epoch
        here = self._placements.get(partition)
        if here is None:
            here = self._placements[partition] = Placement.of(self.kit.partition(partition))
        return here

    def turn(self, period: int) -> range:
        """The partitions whose turn it is at this tick, for work done once per ``period`` ticks
        per partition: spread over the period, not all at one tick."""
        return range(self.ticks % period, len(self.kit.state.owners), period)

    def partition_of(self, key: str) -> int:
        """``key``'s partition in this node's map (the hash function kept while the config is the same)."""
        cfg = self.kit.state.config
        if cfg is not self._hash_for:
            self._hash_for, self._number = cfg, cfg.hash_config.number
        return self._number(key)

    # ------------------------------------------------------------ sending
    def send(self, dst: str, msg: Message) -> None:
        if type(msg) is Result or type(msg) is Refused:
            self.requests.answered(dst, msg)  # (the answer to a client's request is remembered)
        if dst == self.me:
            self.local.append(msg)
        else:
            self.outbox.append((dst, msg))

    def refuse(self, dst: str, rid: int, reason: str, epoch: int = 0, detail: str = "") -> None:
        self.stats.refused += 1
        self.send(dst, Refused(rid, reason, epoch or self.kit.state.epoch, detail))

    def refuse_collected(self, src: str, rid: int, partition: int) -> None:
        """Tombstones were collected here since the sender's floor: it may carry an older value."""
        self.send(src, Refused(rid, "collected", 0, "", self.data.floor(partition)))

    # ------------------------------------------------------------ the fence
    def known_partition(self, src: str, rid: int, partition: int) -> bool:
        """A partition of this cluster's map; else the request is refused (no map yet: behind)."""
        cfg = self.kit.state.config
        if cfg is None or type(partition) is not int or not 0 <= partition < cfg.partition_count:
            self.refuse(src, rid, "behind" if cfg is None else "bad_request")
            return False
        return True

    def fence(self, src: str, rid: int, partition: int, epoch: int) -> Placement | None:
        """The partition's placement if the sender's epoch is this copy's and it serves it; else refused."""
        if not self.known_partition(src, rid, partition):
            return None
        here = self.placement(partition)
        if epoch != here.epoch:
            self.refuse(src, rid, "stale" if epoch < here.epoch else "behind", here.epoch)
            return None
        if self.me not in here.asked:
            self.refuse(src, rid, "not_serving", here.epoch)
            return None
        return here
