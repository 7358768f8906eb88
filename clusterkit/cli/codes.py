"""Exit codes of the ``clusterkit`` command: one table for every subcommand, printed by ``--help``."""

from __future__ import annotations

import sys

EXIT_OK = 0
# The thing checked is wrong: a history is not linearizable, the demo's nodes disagree or broke an invariant.
EXIT_FAILED = 1
# argparse's own code for a bad command line (unknown flag, a value out of range).
EXIT_USAGE = 2
# `check linearizability` only: the budget ran out before a verdict (kept at 2 for existing CI scripts).
EXIT_UNKNOWN = 2
# An input file that can't be read or parsed, holds nothing to check, or doesn't fit the command.
EXIT_BAD_INPUT = 3
# `clusterkit node`: its data directory lost data it had synced (a log cut short or corrupted before
# its last sync mark, a snapshot file gone): it refuses to start on it. sysexits' EX_DATAERR. Move the
# data directory away and restart with the same node id and JOIN_ADDR: it rejoins as a fresh member.
EXIT_STORAGE_DAMAGED = 65
# `clusterkit node`: the node stopped itself because a write or sync of its data failed (ENOSPC, EIO,
# the directory gone). sysexits' EX_IOERR. Restart it once the disk is fixed: it starts from what
# its disk holds.
EXIT_STORAGE_FAILED = 74
# `clusterkit node`: the node stopped itself on an internal error it could not contain (a bug: the
# CRITICAL line has the traceback). sysexits' EX_SOFTWARE.
EXIT_INTERNAL = 70
# `clusterkit node`: the cluster refused this node for good (its join got 409: the id is taken or the
# config differs; 403: the peer handshake failed; 401: no credential), or its own log says it was
# removed (POST /leave). Asking again can't help: change the config, or wipe the data dir and rejoin.
# sysexits' EX_CONFIG.
EXIT_REFUSED = 78
# Ctrl-C: 128 + SIGINT, what a shell reports for an interrupted command.
EXIT_INTERRUPTED = 130
# The reader closed stdout (`clusterkit ... | head -1`): 128 + SIGPIPE, what a shell reports for any
# Unix tool stopped the same way, so `set -o pipefail` scripts see one code whatever the tool.
EXIT_BROKEN_PIPE = 141

EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK}    success
  {EXIT_FAILED}    check failed: a history is not linearizable; the demo's nodes disagree or broke an invariant
  {EXIT_USAGE}    bad command line (usage error); check linearizability: unknown, budget ran out
  {EXIT_BAD_INPUT}    bad input file: unreadable, malformed, nothing in it to check
  {EXIT_STORAGE_DAMAGED}   node: its data directory lost synced data; move it away and restart with the same
       node id and JOIN_ADDR to rejoin as a fresh member
  {EXIT_INTERNAL}   node: stopped on an internal error (a bug; the CRITICAL line says where)
  {EXIT_STORAGE_FAILED}   node: stopped because a write or sync of its data failed (disk full, I/O error,
       data directory gone): restart it once the disk is fixed
  {EXIT_REFUSED}   node: refused by the cluster (join answered 401/403/409) or removed from it: fix the
       config, or wipe the data directory and join again
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
  {EXIT_BROKEN_PIPE}  stdout closed by the reader (e.g. piped into head); the rest is dropped
"""


def error(prog: str, message: str, code: int) -> int:
    """One line on stderr, in argparse's ``prog: error: message`` shape, and the exit code to return."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code
