"""One line per malformed request, and not even that many.

aiohttp logs every request its parser refuses (a bad header, bad chunking, a bad
Content-Length) as ``Error handling request`` with a full traceback at ERROR: 1,400 malformed
requests wrote 470 tracebacks. A peer that sends garbage is not an error of the node's. The
:class:`RateLimited` filter, on the logger the node's HTTP server is given (:func:`server_logger`),
turns each record into one WARNING line naming the exception, and lets at most one line per kind
(exception type) through every ``interval`` seconds; the next line that gets through says how
many were left out meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL = 10.0  # seconds between two lines about the same kind of bad request


class RateLimited(logging.Filter):
    def __init__(self, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        # (by exception type, or the message's format string: never by anything a client chooses,
        # so the table stays as small as the kinds of error)
        kind = type(exc).__name__ if exc is not None else str(record.msg)
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        left_out = self._suppressed.pop(kind, 0)
        detail = f"{kind}: {str(exc).splitlines()[0] if str(exc) else ''}" if exc is not None else ""
        message = record.getMessage() + (f": {detail}" if detail else "")
        if left_out:
            message += f" ({left_out} more like it in the last {self.interval:g} s not logged)"
        # One line: no traceback, and a bad request is the client's fault, not the node's.
        record.msg, record.args = message, None
        record.exc_info = record.exc_text = record.stack_info = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def server_logger(name: str = "clusterkit.net.http.requests") -> logging.Logger:
    """The logger to hand aiohttp's request handler (``AppRunner(..., logger=...)``), filtered once."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RateLimited) for f in logger.filters):
        logger.addFilter(RateLimited())
    return logger
