"""Free ports for started processes come from below the kernel's ephemeral range, once each."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from chatmq.core import ports
from chatmq.core.ports import ephemeral_range, free_port


def test_ports_come_from_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    low, _ = ephemeral_range()
    given = [free_port() for _ in range(300)]
    assert len(set(given)) == len(given)
    assert all(port < low for port in given)
    for port in given[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free: nothing listens there


def test_a_port_someone_listens_on_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    low, _ = ephemeral_range()
    busy, free = low - 5_000, low - 5_001
    picks = iter([busy, free])
    monkeypatch.setattr(ports, "_given", set())
    monkeypatch.setattr("chatmq.core.ports.random.randrange", lambda _a, _b: next(picks))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", busy))
        taken.listen()
        assert free_port() == free


def test_the_range_file_is_read_and_a_missing_one_means_linuxs_default(tmp_path: Path) -> None:
    (tmp_path / "range").write_text("40000\t50000\n")
    assert ephemeral_range(tmp_path / "range") == (40000, 50000)
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)


def test_with_no_room_below_the_range_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1024, 65535))
    port = free_port()
    assert 1024 <= port <= 65535
