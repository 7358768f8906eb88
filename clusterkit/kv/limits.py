"""How large a client's key and value may be, and the check every request passes before anything is stored."""

from __future__ import annotations

from typing import Any

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1 << 20


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate: msgpack (and the log) can't store it


def check_request(key: Any, value: Any = None) -> str | None:
    """Why a client's key or value is refused (None: fine). Checked before anything is stored:
    a string the log can't encode must never reach the data."""
    # At a glance first (every request, on the client and the node): ASCII text is valid UTF-8
    # exactly as long as itself, so a short ASCII key with no value, a short ASCII one or bytes passes.
    if (type(key) is str and 0 < len(key) <= MAX_KEY_BYTES and key.isascii()
            and (value is None or (type(value) is str and len(value) <= MAX_VALUE_BYTES and value.isascii())
                 or (type(value) is bytes and len(value) <= MAX_VALUE_BYTES))):
        return None
    if not isinstance(key, str) or not key:
        return "key must be a non-empty string"
    raw = _utf8(key)
    if raw is None:
        return "key must be valid UTF-8 text (it holds a lone surrogate)"
    if len(raw) > MAX_KEY_BYTES:
        return f"key is longer than {MAX_KEY_BYTES} bytes"
    if value is not None:
        if not isinstance(value, (str, bytes)):
            return "value must be a string"
        data = _utf8(value) if isinstance(value, str) else value
        if data is None:
            return "value must be valid UTF-8 text (it holds a lone surrogate)"
        if len(data) > MAX_VALUE_BYTES:
            return f"value is larger than {MAX_VALUE_BYTES} bytes"
    return None
