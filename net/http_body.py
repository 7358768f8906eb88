"""Request bodies on the HTTP API, bounded and parsed at the door.

Two guards every route shares: a body that says it is larger than the app's ``client_max_size``
is refused (413) before a byte of it is read (:func:`size_guard`), and a JSON body is parsed by
:func:`read_json`, which turns every way a body can be bad, nesting deep enough to exhaust the
parser's recursion included, into :class:`BadBody` (a 400). A chunked body has no length up
front: ``request.read()`` stops it at ``client_max_size`` (aiohttp raises 413 there).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

MAX_DEPTH = 64  # no route takes documents nested deeper than a few levels


class BadBody(ValueError):
    """The body is not what the route takes: the message says why, for a 400."""


def parse_json(raw: bytes, default: bytes = b"null") -> Any:
    """``raw`` as JSON; BadBody for anything that isn't (bad bytes, bad syntax, too deep)."""
    if _too_deep(raw):
        raise BadBody(f"the body is not JSON this API takes: nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(raw or default)
    except RecursionError:  # (a second line of defence: the depth scan counts brackets, not values)
        raise BadBody("the body is not JSON this API takes: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadBody(f"the body is not JSON: {exc}") from None


def _too_deep(raw: bytes) -> bool:
    """Brackets open at once beyond MAX_DEPTH, outside strings. Cheap: only bodies that could be
    that deep (more opening brackets than MAX_DEPTH) are scanned, byte by byte."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


async def read_json(request: web.Request, default: bytes = b"null") -> Any:
    """The request's body as JSON (``default`` when empty); 413 past ``client_max_size``."""
    return parse_json(await request.read(), default)


@web.middleware
async def size_guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """A declared length over the limit is a 413 before anything is read or routed: memory is
    only ever spent on bodies the API could accept."""
    limit = request.app._client_max_size  # noqa: SLF001 - aiohttp keeps it only there
    if request.content_length is not None and request.content_length > limit:
        return web.json_response({"error": f"Request Entity Too Large: the body is over {limit} bytes"},
                                 status=413)
    return await handler(request)
