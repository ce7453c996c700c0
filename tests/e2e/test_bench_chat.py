"""``chatmq bench chat --quick`` end to end: the command starts the server (or a cluster) itself,
runs every row, writes the JSON and Markdown, and loses or duplicates nothing. No timing is
asserted: speed is measured by the benchmark itself (``docs/benchmarks.md``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chatmq.bench.bench_chat import DEFAULT_ROWS, ROWS


def run_bench(tmp_path: Path, mode: str) -> dict[str, Any]:
    """Runs the quick benchmark in ``mode`` and checks its JSON and report; returns the JSON."""
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = subprocess.run(
        [sys.executable, "-m", "chatmq.run.cli", "bench", "chat", "--mode", mode, "--quick", "--duration", "1.5",
         "--pairs", "4", "--json", str(out_json), "--markdown", str(out_md)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-6000:]
    data: dict[str, Any] = json.loads(out_json.read_text())
    rows: list[dict[str, Any]] = data["rows"]
    assert [r["key"] for r in rows] == [spec.key for spec in ROWS if spec.key in DEFAULT_ROWS]
    for row in rows:
        assert row["sent"] > 0, row
        assert row["delivered"] == row["expected"], row
        counts = {k: row[k] for k in ("lost", "duplicated", "unacked")}
        assert counts == {"lost": 0, "duplicated": 0, "unacked": 0}, row
        assert row["errors"] == {}, row
        assert row["p50_ms"] is not None, row  # some latency was measured (no timing is asserted)
    groups = next(r for r in rows if r["key"] == "groups_max")
    assert groups["expected"] == 4 * groups["sent"]  # groups of 5: four other members each
    report = out_md.read_text()
    for spec in ROWS:
        assert (spec.title in report) == (spec.key in DEFAULT_ROWS)
    return data


def test_bench_chat_presence_storm_quick(tmp_path: Path) -> None:
    """The storm alone (``--rows``), on 20 users: every watcher sees every change once."""
    out_json, out_md = tmp_path / "storm.json", tmp_path / "storm.md"
    proc = subprocess.run(
        [sys.executable, "-m", "chatmq.run.cli", "bench", "chat", "--quick", "--rows", "presence_storm",
         "--storm-users", "20", "--json", str(out_json), "--markdown", str(out_md)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    [row] = json.loads(out_json.read_text())["rows"]
    assert row["key"] == "presence_storm"
    assert (row["sent"], row["expected"], row["delivered"]) == (40, 40, 40)  # offline and online of 20 users
    assert (row["lost"], row["duplicated"]) == (0, 0)
    assert row["p50_ms"] is not None
    assert "presence storm" in out_md.read_text()


def test_bench_chat_embedded_quick(tmp_path: Path) -> None:
    meta = run_bench(tmp_path, "embedded")["meta"]
    assert (meta["mode"], meta["run"]) == ("embedded", "quick")


@pytest.mark.cluster
def test_bench_chat_cluster_quick(tmp_path: Path) -> None:
    if not (os.environ.get("CHATMQ_KAFKA_BOOTSTRAP") and os.environ.get("CHATMQ_MONGO_URL")):
        pytest.skip("CHATMQ_KAFKA_BOOTSTRAP / CHATMQ_MONGO_URL are not set (scripts/services.sh up kafka mongo)")
    meta = run_bench(tmp_path, "cluster")["meta"]
    assert (meta["mode"], meta["run"]) == ("cluster", "quick")
