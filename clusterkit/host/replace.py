"""Replacing a member that lost its disk: what a leader does, in every driver.

A node restarted on an empty data directory under an id that is still a member has forgotten the
entries it acknowledged and the votes it gave. Counting it as that member could lose a committed
entry (its vote could elect a leader that lacks one). So the leader replaces it, one committed
step at a time: its cluster-state entry is failed (its partitions move to the copies that are
left) and then forgotten, it leaves the Raft voters, and it is then added back as a learner that
catches up and is promoted like any new node, and joins the cluster state as a new node that
copies its partitions back. The node itself votes only once it has been taken in (see
:attr:`clusterkit.raft.node.RaftNode.admitted`).
"""

from __future__ import annotations

from typing import Any

from ..cluster_state import FAILED, fail_command, leave_command
from ..raft.errors import RaftError
from .node import NodeHost


def still_a_member(host: NodeHost, state: Any, node_id: str) -> bool:
    """``node_id`` is still counted as its old self: a Raft voter, or in the cluster state."""
    raft = host.raft
    return raft is not None and (node_id in raft.voters or node_id in state.nodes)


def replace_step(host: NodeHost, state: Any, node_id: str) -> bool:
    """On the leader: propose the next step of replacing ``node_id`` unless the previous one is
    still uncommitted. True when proposed (the driver drains the host), False when there is
    nothing to do now. ValueError for the leader itself."""
    raft = host.raft
    if raft is None or not raft.is_leader:
        return False
    if node_id == host.id:
        raise ValueError(f"{node_id} leads this cluster: it can't be replaced while it leads")
    if raft.log.committed < raft.log.last_index():
        return False  # the previous step is still on its way
    info = state.nodes.get(node_id)
    try:
        if info is not None and info.status != FAILED:
            host.propose(fail_command(node_id))
        elif info is not None:
            host.propose(leave_command(node_id))  # a failed node's leave forgets it at once
        elif node_id in raft.voters:
            raft.remove_node(node_id)
        else:
            return False
    except RaftError:
        return False
    return True
