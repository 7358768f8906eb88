"""After the quiet phase: did the KV store keep every acknowledged write, on every owner?"""

from __future__ import annotations

from clusterkit.kv.records import Record

from .cluster import SimCluster
from .kvclients import KVClients
from .kvhost import SimKV


def check_kv(
    c: SimCluster, kv: SimKV, clients: KVClients, crashes: dict[str, list[float]] | None = None
) -> tuple[list[str], dict[str, int]]:
    """Problems, and counts: keys checked, acknowledged writes lost, keys missing their newest
    version on one of their owners.

    ASYNC may lose writes, but only those its primary acknowledged and then took down with it
    (``crashes``: when each node was killed or failed): each loss must follow from one, and the
    longest gap between acknowledging a lost write and that crash is the measured loss window."""
    lead = c.leader()
    if lead is None:
        return [], {}
    state = c.nodes[lead].kit.state
    if state.config is None:
        return [], {}
    number = state.config.hash_config.number
    newest: dict[str, Record | None] = {}
    keys = sorted({key for key, _v, _t in clients.acked} | {op["key"] for op in clients.history})
    problems: list[str] = []
    short = 0
    for key in keys:
        p = number(key)
        # A tombstone collected (every owner held it) is gone from the copies but still the
        # newest version of its key; a copy still holding it, or nothing, holds that version.
        gone = kv.collected.get((p, key))
        copies = {n: kv.nodes[n].server.data.get(p, key) for n in state.owners[p] if n in kv.nodes}
        held = [r for r in copies.values() if r is not None]
        best = max(held, key=lambda r: r.version) if held else None
        if gone is not None and (best is None or best.version <= gone):
            best = Record(gone, None)
            copies = {n: None if r is not None and r.value is None and r.version <= gone else r
                      for n, r in copies.items()}
        newest[key] = best
        lacking = sorted(n for n, r in copies.items()
                         if (r is None and not (best is not None and best.version == gone))
                         or (r is not None and (best is None or r.version != best.version)))
        if lacking and best is not None:
            short += 1
            if len(problems) < 5:
                problems.append(f"kv: key {key} (partition {p}) lacks its newest version on owners {lacking}")
    lost = [(key, v, t) for key, v, t in clients.acked if newest.get(key) is None or newest[key].version < v]
    window = 0.0
    if kv.config.policy.loss_window:  # losses allowed, each only after its primary's crash
        unexplained = []
        for key, v, t in lost:
            primary = v.writer.split("#", 1)[0]
            after = [when for when in (crashes or {}).get(primary, []) if when >= t]
            if after:
                window = max(window, min(after) - t)
            else:
                unexplained.append((key, v, t))
        lost_problem = unexplained
    else:
        lost_problem = lost
    if lost_problem:
        key, v, t = lost_problem[0]
        problems.append(f"kv: {len(lost_problem)} acknowledged writes lost, first {key} version "
                        f"{v.counter}/{v.writer} acknowledged at {t:.3f}s")
    return problems, {"kv_keys": len(keys), "kv_acked_writes": len(clients.acked), "kv_lost_writes": len(lost),
                      "kv_loss_window_ms": round(window * 1000), "kv_keys_short_of_owners": short}
