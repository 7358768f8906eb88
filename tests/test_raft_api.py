"""The node's contract with its driver: Ready/advance, bad inputs, configuration."""

from __future__ import annotations

import pytest

from clusterkit.raft import ConfigError, Heartbeat, RaftConfig, Role

from .conftest import drain, make_node


def test_ready_twice_without_advance_is_an_error():
    node = make_node()
    node.step(Heartbeat(1, "b", "a", 0))
    node.ready()
    with pytest.raises(RuntimeError, match="before advance"):
        node.ready()


def test_advance_without_ready_is_an_error():
    with pytest.raises(RuntimeError, match="without an outstanding"):
        make_node().advance(None)  # type: ignore[arg-type]


def test_no_ready_while_one_is_outstanding_then_the_rest():
    node = make_node()
    node.step(Heartbeat(1, "b", "a", 0))
    rd = node.ready()
    node.step(Heartbeat(1, "b", "a", 0))  # more work arrives meanwhile
    assert not node.has_ready()
    node.advance(rd)
    assert node.has_ready()
    assert len(node.ready().messages) == 1


def test_ready_reports_soft_state_changes():
    node = make_node()
    node.step(Heartbeat(1, "b", "a", 0))
    rd = node.ready()
    assert rd.soft_state.leader == "b" and rd.soft_state.role is Role.FOLLOWER
    node.advance(rd)
    node.step(Heartbeat(1, "b", "a", 0))
    assert node.ready().soft_state is None


def test_message_for_another_node_is_refused():
    with pytest.raises(ValueError, match="delivered to 'a'"):
        make_node().step(Heartbeat(1, "b", "c", 0))


def test_non_message_is_refused():
    with pytest.raises(TypeError, match="not a Raft message"):
        make_node().step({"term": 1})  # type: ignore[arg-type]


def test_message_from_unknown_node_does_not_break_leader():
    node = make_node("a", voters=("a",))
    node.campaign()
    from clusterkit.raft import AppendResponse

    node.step(AppendResponse(node.term, "stranger", "a", 99))
    assert node.role is Role.LEADER
    drain(node)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"heartbeat_ticks": 0}, "heartbeat_ticks"),
        ({"election_ticks": 1, "heartbeat_ticks": 1}, "greater than heartbeat"),
        ({"max_inflight": 0}, "max_inflight"),
        ({"max_entries_per_msg": "10"}, "must be an int"),
        ({"max_uncommitted_bytes": -1}, "max_uncommitted_bytes"),
    ],
)
def test_bad_config_is_refused(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RaftConfig(**kwargs)


def test_empty_node_id_is_refused():
    with pytest.raises(ConfigError, match="node_id"):
        make_node("")


def test_status_reports_role_term_and_progress():
    node = make_node("a", voters=("a",))
    node.campaign()
    st = node.status()
    assert st["role"] == "leader" and st["term"] == 1 and st["leader"] == "a"
    assert st["progress"]["a"]["match"] == 0  # the leader's own match is what its disk holds
    node.advance(node.ready())
    assert node.status()["progress"]["a"]["match"] == 1 and node.log.committed == 1


def test_monitor_compares_every_nodes_committed_entries():
    """A node committing a different (shorter) prefix than one already seen is caught at once."""
    from clusterkit.check import InvariantViolation, RaftSafetyMonitor
    from clusterkit.raft import Entry

    mon = RaftSafetyMonitor()
    mon.committed_seen("a", 1, [Entry(1, 1, b"x"), Entry(1, 2, b"y")])
    with pytest.raises(InvariantViolation, match="commit safety"):
        mon.committed_seen("b", 1, [Entry(1, 1, b"z")])
