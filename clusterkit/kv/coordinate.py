"""Client requests: deduplicated, then routed by strategy and, where this node coordinates, run as quorum operations.

How a request is routed is what its strategy (:mod:`.strategies`) says. ``sync``: the client coordinates quorum reads and writes (:class:`~.operation.Operation`); a node
asked directly coordinates them itself. ``server-side``: a node forwards a client's request to the
partition's primary, which coordinates the quorum operation. ``async``: the primary writes locally
and acknowledges (:mod:`.replicate`); any copy answers a read. A copy's side of an operation
(Query, Store) is here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .context import ServerContext
from .floors import CollectedRounds
from .limits import check_request
from .messages import Ack, Found, Get, Message, Query, Refused, Result, Set, Store
from .operation import Operation, Outbound
from .quorum import Placement
from .replicate import Replication


@dataclass
class Pending:
    """A client request this node answers later: its own operation, or one it forwarded."""

    src: str
    rid: int
    deadline: int
    op: Operation | None = None
    write: bool = False
    rids: list[int] = field(default_factory=list)  # every request id its answers may carry


@dataclass(eq=False)
class Coordinator:
    ctx: ServerContext = field(repr=False)
    floors: CollectedRounds = field(repr=False)
    replication: Replication = field(repr=False)  # ASYNC writes
    pending: dict[int, Pending] = field(default_factory=dict)

    def client(self, src: str, msg: Set | Get) -> None:
        ctx = self.ctx
        known = ctx.requests.state(src, msg.rid)
        if known is not False:
            if known is not True:
                ctx.outbox.append((src, known))  # a duplicate of one answered: answer again
            return  # a duplicate of one in progress: its answer is coming
        ctx.requests.begin(src, msg.rid)
        write = type(msg) is Set
        problem = check_request(msg.key, msg.value if write else None)
        if problem is None and write and msg.w is not None:
            try:
                ctx.quorums.with_w(msg.w)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            ctx.refuse(src, msg.rid, "bad_request", detail=problem)
            return
        if ctx.kit.state.config is None:
            ctx.refuse(src, msg.rid, "unavailable", detail="this node has no cluster map yet")
            return
        partition = ctx.partition_of(msg.key)
        here = ctx.placement(partition)
        if write:
            ctx.stats.sets += 1
        else:
            ctx.stats.gets += 1
        strategy = ctx.config.policy
        if strategy.reads_from_any_copy and not write and ctx.me in here.serving:
            ctx.send(src, Result(msg.rid, ctx.data.get(partition, msg.key)))  # any copy answers (ASYNC)
        elif strategy.forwards_to_primary and here.primary != ctx.me:
            self._forward(src, msg, here.primary)
        elif strategy.acks_before_replicating:
            if isinstance(msg, Get):
                ctx.send(src, Result(msg.rid, ctx.data.get(partition, msg.key)))
            else:
                self.replication.write(src, msg, partition, here)
        else:
            self._coordinate(src, msg, here)

    def _forward(self, src: str, msg: Set | Get, primary: str) -> None:
        ctx = self.ctx
        if msg.hops >= 2:
            ctx.refuse(src, msg.rid, "not_primary", detail=f"maps disagree on the primary (last: {primary})")
            return
        rid = next(ctx.rids)
        ctx.stats.forwarded += 1
        self.pending[rid] = Pending(src, msg.rid, ctx.ticks + ctx.config.op_timeout_ticks,
                                    write=isinstance(msg, Set), rids=[rid])
        ctx.routes[rid] = ("pending", rid)
        if isinstance(msg, Set):
            ctx.send(primary, Set(rid, msg.key, msg.value, msg.w, msg.hops + 1))
        else:
            ctx.send(primary, Get(rid, msg.key, msg.hops + 1))

    def _coordinate(self, src: str, msg: Set | Get, here: Placement) -> None:
        ctx = self.ctx
        write = isinstance(msg, Set)
        op = Operation(
            msg.key, here,
            ctx.quorums.with_w(msg.w) if isinstance(msg, Set) else ctx.quorums,
            f"{ctx.me}#{next(ctx.writes)}", ctx.next_rid,
            write=write, value=msg.value if isinstance(msg, Set) else None,
        )
        op_rid = next(ctx.rids)
        self.pending[op_rid] = Pending(src, msg.rid, ctx.ticks + ctx.config.op_timeout_ticks, op, write)
        self._op_sends(op_rid, op.start())
        self._op_done(op_rid)

    def _op_sends(self, key: int, sends: list[Outbound]) -> None:
        ctx = self.ctx
        pend = self.pending[key]
        assert pend.op is not None
        if pend.op.rid not in ctx.routes:
            ctx.routes[pend.op.rid] = ("pending", key)
            pend.rids.append(pend.op.rid)
        for dst, m in sends:
            ctx.send(dst, m)

    def _close(self, key: int) -> Pending:
        pend = self.pending.pop(key)
        for rid in pend.rids:
            self.ctx.routes.pop(rid, None)
        return pend

    def _op_done(self, key: int) -> None:
        pend = self.pending.get(key)
        if pend is None or pend.op is None or pend.op.outcome is None:
            return
        self._close(key)
        op = pend.op
        self.ctx.send(pend.src, Result(pend.rid, op.result, op.outcome, op.detail))

    def answer(self, key: int, src: str, msg: Message) -> None:
        """An answer to one of this node's requests for pending request ``key``."""
        ctx = self.ctx
        pend = self.pending[key]
        if pend.op is None:  # a forwarded request's answer: relay it
            self._close(key)
            if isinstance(msg, Result):
                ctx.send(pend.src, Result(pend.rid, msg.record, msg.outcome, msg.detail))
            elif isinstance(msg, Refused):
                ctx.send(pend.src, Refused(pend.rid, msg.reason, msg.epoch, msg.detail))
            return
        self._op_sends(key, pend.op.on_message(src, msg))
        if pend.op.stale:
            self._refresh(key)
        self._op_done(key)

    def _refresh(self, key: int) -> None:
        op = self.pending[key].op
        assert op is not None
        self._op_sends(key, op.refresh(self.ctx.placement(op.placement.number)))

    def tick(self) -> None:
        for key, pend in list(self.pending.items()):
            self._tick_pending(key, pend)

    def _tick_pending(self, key: int, pend: Pending) -> None:
        ctx = self.ctx
        op = pend.op
        if ctx.ticks >= pend.deadline:
            self._close(key)
            if op is not None:
                op.expire()
                ctx.send(pend.src, Result(pend.rid, None, op.outcome or "info", op.detail))
            else:
                outcome = "info" if pend.write else "fail"
                ctx.send(pend.src, Result(pend.rid, None, outcome, "the primary did not answer in time"))
            return
        if op is None:
            return
        if op.stale:
            self._refresh(key)
        elif (pend.deadline - ctx.ticks) % ctx.config.retry_ticks == 0:
            self._op_sends(key, op.retry())
        self._op_done(key)

    # ------------------------------------------------------------ a copy's side of an operation
    def query(self, src: str, msg: Query) -> None:
        ctx = self.ctx
        if ctx.fence(src, msg.rid, msg.partition, msg.epoch) is not None:
            found = Found(msg.rid, ctx.data.get(msg.partition, msg.key), ctx.data.floors.get(msg.partition, 0))
            if ctx.answer_early and src != ctx.me and ctx.data.durable(msg.partition, msg.key):
                ctx.early.append((src, found))  # reports synced data only: needn't wait for a sync
            else:
                ctx.send(src, found)

    def store(self, src: str, msg: Store) -> None:
        ctx = self.ctx
        here = ctx.fence(src, msg.rid, msg.partition, msg.epoch)
        if here is None:
            return
        data = ctx.data
        if (msg.floor < data.floors.get(msg.partition, 0) and not self.floors.may_take(
                msg.partition, msg.key, msg.record, msg.floor)) or (
                msg.refreshed and ctx.me in here.incoming and data.get(msg.partition, msg.key) is None):
            # (a new owner still copying knows no floor yet: a version chosen at an older
            # placement may be older than a delete its sources collected since)
            ctx.refuse_collected(src, msg.rid, msg.partition)
            return
        data.put(msg.partition, msg.key, msg.record)
        ctx.send(src, Ack(msg.rid))
