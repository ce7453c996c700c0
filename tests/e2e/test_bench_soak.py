"""``chatmq bench soak`` end to end, small: it starts the server itself, runs at least two waves of
clients while the chats run, loses nothing, writes its JSON and passes. No figure is asserted: the
soak itself measures (``docs/benchmarks.md``)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any


def test_a_small_soak_runs_waves_and_passes(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "chatmq.run.cli", "bench", "soak", "--clients", "200", "--duration", "5",
         "--hold", "1", "--pairs", "2", "--wave-users", "4", "--max-ping-p99-ms", "5000", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-6000:]
    assert "verdict: PASS" in proc.stdout
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["failures"] == []
    waves = data["waves"]
    assert len(waves) >= 2
    assert [w["how_closed"] for w in waves[:2]] == ["DISCONNECT", "reset"]
    for w in waves:
        assert w["error"] is None, w
        assert w["peak_fds"] >= 200, w  # the server held every client's socket
        assert w["after"]["clients"] == 0
        assert w["after"]["fds"] < w["peak_fds"] - 150, w  # and let them go
    for c in data["chats"]:
        assert c["sent"] > 0, c
        assert (c["delivered"], c["acked"], c["lost"], c["duplicated"]) == (c["sent"], c["sent"], 0, 0), c
    assert len(data["samples"]) >= 3
    assert any(s["clients"] == 200 for s in data["samples"])


def test_too_low_an_open_file_limit_is_refused_saying_what_it_needs(tmp_path: Path) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1000, 1000))

    proc = subprocess.run(
        [sys.executable, "-m", "chatmq.run.cli", "bench", "soak", "--clients", "5000", "--json",
         str(tmp_path / "soak.json")],
        capture_output=True, text=True, timeout=60, check=False, preexec_fn=low_limit,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "5,000 clients need 5,512 open files" in proc.stderr
    assert "the hard limit is 1,000" in proc.stderr
    assert not (tmp_path / "soak.json").exists()  # no server was started, nothing measured
