"""After the quiet phase: did the KV store keep every acknowledged write, on every owner?"""

from __future__ import annotations

from clusterkit.kv.records import Record

from .cluster import SimCluster
from .kvclients import KVClients
from .kvhost import SimKV


def check_kv(c: SimCluster, kv: SimKV, clients: KVClients) -> tuple[list[str], dict[str, int]]:
    """Problems, and counts: keys checked, acknowledged writes lost (ASYNC may lose some: counted,
    not a problem), keys missing a copy on one of their owners."""
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
        copies = {n: kv.nodes[n].server.data.get(p, key) for n in state.owners[p] if n in kv.nodes}
        held = [r for r in copies.values() if r is not None]
        best = max(held, key=lambda r: r.version) if held else None
        newest[key] = best
        lacking = sorted(n for n, r in copies.items() if r is None or best is None or r.version != best.version)
        if lacking and best is not None:
            short += 1
            if len(problems) < 5:
                problems.append(f"kv: key {key} (partition {p}) lacks its newest version on owners {lacking}")
    lost = [(key, v, t) for key, v, t in clients.acked if newest.get(key) is None or newest[key].version < v]
    if lost and kv.config.strategy != "async":
        key, v, t = lost[0]
        problems.append(f"kv: {len(lost)} acknowledged writes lost, first {key} version {v.counter}/{v.writer} "
                        f"acknowledged at {t:.3f}s")
    return problems, {"kv_keys": len(keys), "kv_acked_writes": len(clients.acked), "kv_lost_writes": len(lost),
                      "kv_keys_short_of_owners": short}
