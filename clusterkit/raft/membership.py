"""The leader's voter manager: which single-server change (if any) keeps the voter count healthy.

At most ``max_voters`` voters; everyone else is a learner. A learner is
promoted once it has acknowledged the log, is within ``promote_lag`` entries
of the leader's last index and has answered within an election timeout. A
voter silent for ``voter_down_ticks`` is replaced: first a caught-up learner
is promoted (briefly one voter over the limit, which only widens the quorum
by one), then the silent voter is demoted to learner. A group bootstrapped
with more voters than the limit is brought down to it the same way, one
demotion at a time, once its first leader has committed an entry. Pure: the
node applies the change it returns through the log like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .confchange import ConfChange, ConfChangeType
from .progress import Progress
from .ready import RaftConfig


def next_membership_change(
    leader: str,
    voters: Sequence[str],
    learners: Sequence[str],
    progress: Mapping[str, Progress],
    last_index: int,
    cfg: RaftConfig,
) -> ConfChange | None:
    down = [v for v in voters if v != leader and progress[v].inactive_ticks >= cfg.voter_down_ticks]
    ready = [
        lid
        for lid in learners
        # It must have acknowledged the log (match > 0), not merely be new.
        if 0 < progress[lid].match
        and progress[lid].match + cfg.promote_lag >= last_index
        and progress[lid].inactive_ticks < cfg.election_ticks
    ]
    ready.sort(key=lambda lid: (-progress[lid].match, lid))
    limit = cfg.max_voters or len(voters) + 1
    n = len(voters)
    if ready and (n < limit or (down and n - len(down) < limit and n <= limit)):
        return ConfChange(ConfChangeType.ADD_VOTER, ready[0])
    if n > limit:
        # Over the limit: a silent voter goes first; else (a larger bootstrap, or a replaced voter
        # that came back) the least caught-up one, so the voter count settles at the limit.
        extra = down or sorted((v for v in voters if v != leader), key=lambda v: (progress[v].match, v))
        return ConfChange(ConfChangeType.ADD_LEARNER, extra[0])
    return None
