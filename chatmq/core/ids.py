"""Identifier generation.

Server message ids are time-ordered strings: 12 hex digits of milliseconds since the
epoch, 4 hex digits of a per-process counter and 4 random hex digits naming the
process. Within one process they sort in the order they were made; across processes
they sort by millisecond first.
"""

from __future__ import annotations

import secrets
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_process_tag = secrets.token_hex(2)


def now_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def server_id() -> str:
    """A new, unique, time-ordered server message id (20 hex characters)."""
    global _last_ms, _counter
    with _lock:
        ms = now_ms()
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFFF:
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        return f"{ms:012x}{_counter:04x}{_process_tag}"


def user_id() -> str:
    """A new user id: ``u`` and 16 hex digits."""
    return "u" + secrets.token_hex(8)


def group_id() -> str:
    """A new group id: ``g`` and 16 hex digits."""
    return "g" + secrets.token_hex(8)


def device_id() -> str:
    """A new device id: ``d`` and 16 hex digits."""
    return "d" + secrets.token_hex(8)


def command_id() -> str:
    """A new device command id: ``c`` and 16 hex digits."""
    return "c" + secrets.token_hex(8)


def job_id() -> str:
    """A new job id: ``j`` and 16 hex digits."""
    return "j" + secrets.token_hex(8)


def conversation_key(sender: str, recipient: str | None = None, group: str | None = None) -> str:
    """The bus key of a conversation: the group id, or the sorted pair of user ids joined by ``:``."""
    if group is not None:
        return group
    if recipient is None:
        raise ValueError("a conversation needs a recipient or a group")
    a, b = sorted((sender, recipient))
    return f"{a}:{b}"
