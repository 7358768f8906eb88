"""Reading and printing partition plans (the ``clusterkit partitions plan`` command).

Kept apart from the assigner: this module deals with files and text, the
assigner with maps only. JSON shape (what ``--json`` prints and ``--from`` reads):

    {"partitions": {"partition-0": {"primary": "node-1", "replicas": ["node-2", "node-3"]}, ...},
     "moves": [{"partition": "partition-3", "add": ["node-4"], "remove": ["node-1"],
                "old_primary": "node-1", "new_primary": "node-2"}, ...],
     "copies_moved": 12, "primaries_changed": 4, "fewest_copy_moves": 12}

``--from`` also takes the plain ``{"partition-0": ["node-1", "node-2"], ...}`` form.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..partitioning.assigner import PartitionMap, fewest_copy_moves, from_dict, movement
from .text import plural


class PlanError(ValueError):
    """A previous map that can't be read or doesn't fit the plan."""


def load_map(path: str, partition_count: int) -> PartitionMap:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("partitions"), dict):
        doc = doc["partitions"]
    if not isinstance(doc, dict):
        raise PlanError(f"{path}: expected a JSON object of partition id -> owners")
    plain: dict[str, Any] = {}
    for pid, owners in doc.items():
        if isinstance(owners, dict):
            primary, replicas = owners.get("primary"), owners.get("replicas", [])
            if not isinstance(primary, str) or not isinstance(replicas, list):
                raise PlanError(f"{path}: {pid} needs a string 'primary' and a list 'replicas'")
            owners = [primary, *replicas]
        plain[pid] = owners
    try:
        owners_map = from_dict(plain, partition_count)
    except ValueError as exc:
        raise PlanError(f"{path}: {exc}") from None
    for p, owners in enumerate(owners_map):
        # checked here, not left to the assigner, so the message names the file and the partition id
        twice = next((o for i, o in enumerate(owners) if o in owners[:i]), None)
        if twice is not None:
            raise PlanError(f"{path}: partition-{p} lists {twice!r} twice")
    return owners_map


def moves(previous: PartitionMap | None, new: PartitionMap) -> list[dict[str, Any]]:
    out = []
    for p, owners in enumerate(new):
        before = previous[p] if previous is not None else ()
        added = [o for o in owners if o not in before]
        removed = [o for o in before if o not in owners]
        old_primary = before[0] if before else None
        if added or removed or old_primary != owners[0]:
            out.append(
                {
                    "partition": f"partition-{p}",
                    "add": added,
                    "remove": removed,
                    "old_primary": old_primary,
                    "new_primary": owners[0],
                }
            )
    return out


def _summary(previous: PartitionMap | None, new: PartitionMap, nodes: Sequence[str], rf: int) -> dict[str, Any]:
    moved = movement(previous, new)
    return {
        "copies_moved": moved.copies_moved,
        "primaries_changed": moved.primaries_changed,
        "fewest_copy_moves": fewest_copy_moves(previous, nodes, len(new), rf) if previous is not None else moved.copies_moved,
    }


def render_json(previous: PartitionMap | None, new: PartitionMap, nodes: Sequence[str], rf: int) -> str:
    doc = {
        "partitions": {f"partition-{p}": {"primary": o[0], "replicas": list(o[1:])} for p, o in enumerate(new)},
        "moves": moves(previous, new) if previous is not None else [],
        **_summary(previous, new, nodes, rf),
    }
    return json.dumps(doc, indent=2)


def render_text(previous: PartitionMap | None, new: PartitionMap, nodes: Sequence[str], rf: int) -> str:
    lines = [f"{'partition':<16} {'primary':<12} replicas"]
    lines += [f"{f'partition-{p}':<16} {o[0]:<12} {', '.join(o[1:]) or '-'}" for p, o in enumerate(new)]
    copies = Counter(o for owners in new for o in owners)
    primaries = Counter(owners[0] for owners in new)
    lines.append("")
    lines.append(
        "per node: "
        + ", ".join(
            f"{n} {plural(copies[n], 'copy', 'copies')}/{plural(primaries[n], 'primary', 'primaries')}"
            for n in sorted(nodes)
        )
    )
    if previous is not None:
        summary = _summary(previous, new, nodes, rf)
        lines.append("")
        lines.append(
            f"moves: {plural(summary['copies_moved'], 'copy', 'copies')} "
            f"(fewest possible {summary['fewest_copy_moves']}), "
            f"{plural(summary['primaries_changed'], 'primary', 'primaries')} changed"
        )
        for mv in moves(previous, new):
            parts = []
            if mv["add"]:
                parts.append("copy to " + ", ".join(mv["add"]))
            if mv["remove"]:
                parts.append("drop " + ", ".join(mv["remove"]))
            if mv["old_primary"] != mv["new_primary"]:
                parts.append(f"primary {mv['old_primary']} -> {mv['new_primary']}")
            lines.append(f"  {mv['partition']}: {'; '.join(parts)}")
    return "\n".join(lines)
