"""Free TCP ports for processes started on this machine (tests, benchmarks, the local cluster).

Binding port 0 hands out a port from the kernel's ephemeral range, the same range the
kernel takes the local ports of outgoing connections from: between closing the probe and
the new process binding it, an outgoing connection (a Kafka client, say) may take it, and
the process fails with "address already in use". So ports are chosen at random below the
ephemeral range, checked free by binding, and never handed out twice by one process.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_SPAN = 12_000  # ports chosen from [ephemeral low - _SPAN, ephemeral low)
_lock = threading.Lock()
_given: set[int] = set()


def ephemeral_range(path: Path = _RANGE_FILE) -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux's default when unknown)."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now, outside the ephemeral range when it leaves room."""
    low, _ = ephemeral_range()
    first = max(low - _SPAN, 10_000)
    with _lock:
        if low - first >= 1_000:
            for _ in range(200):
                port = random.randrange(first, low)
                if port not in _given and _bindable(host, port):
                    _given.add(port)
                    return port
        for _ in range(50):  # no room below the range (or all taken): let the kernel choose
            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in _given:
                _given.add(port)
                return port
    raise OSError(f"no free TCP port on {host}")
