"""``chatmq.bench.bench_chat``: the pure parts of the chat benchmark (quantiles, pairing, the
report; its packets come from ``chatmq.broker.wire``). Speed is never asserted: the benchmark
measures it (``docs/benchmarks.md``); ``tests/e2e/test_bench_chat.py`` runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatmq.bench import bench_chat
from chatmq.bench.bench_chat import (
    ROWS,
    BenchUser,
    RowResult,
    Target,
    cpu_table,
    markdown_table,
    merge_postgres,
    pair_targets,
    percentile,
    prefill_store,
    report_markdown,
    rows_from_json,
    stored_messages,
)
from chatmq.core.settings import Settings
from chatmq.run.assembly import make_store


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([5], 0.99) == 5
    assert percentile([], 0.5) is None


def test_pairs_chat_both_ways() -> None:
    users = [BenchUser(i, f"u{i}", "t") for i in range(4)]
    assert pair_targets(users) == {0: Target("u1", None, 1), 1: Target("u0", None, 1),
                                   2: Target("u3", None, 1), 3: Target("u2", None, 1)}


def _row(key: str, title: str) -> RowResult:
    return RowResult(key=key, title=title, rate=1234.5, send_rate=1300.0, target_rate=None, seconds=3.0, sent=3900,
                     expected=3900, delivered=3900, lost=0, duplicated=0, unacked=0, stray=0, receipts_back=3900,
                     p50_ms=12.5, p99_ms=80.0, client_cpu=0.2, cpu={"serve": 0.9},
                     cpu_ms_per_message={"serve": 0.5, "client": 0.1}, errors={"rate_limited": 2})


def test_report_has_every_row_and_process() -> None:
    rows = [_row(spec.key, spec.title) for spec in ROWS]
    meta = {"mode": "embedded", "run": "quick", "started": "2026-01-01T00:00:00+00:00", "commit": "abc",
            "load": {"pairs": 10, "group_size": 5, "duration": 3.0, "window": 20},
            "machine": {"cores": 2, "cpu": "x", "python": "3.11"}}
    table = markdown_table(rows)
    assert table.count("\n") == 1 + len(ROWS)
    assert "1,234 | 1,300 | 12.5 / 80.0 | 0 / 0 | 20% | errors: rate_limited 2" in table
    cpu = cpu_table(rows)
    assert "| serve | 90% · 0.500 |" in cpu
    assert "| load generator (this process) | 20% · 0.100 |" in cpu
    report = report_markdown(rows, meta)
    assert report.startswith("embedded mode, quick run")
    assert rows_from_json({"rows": [vars(r) for r in rows]}) == rows


def test_postgresql_processes_are_one_line_counted_with_the_servers() -> None:
    used = merge_postgres({"ferretdb": 1.0, "postgres": 0.5, "postgres-2": 0.25, "postgres-3": 0.25, "n1": 0.1})
    assert used == {"ferretdb": 1.0, "postgres": 1.0, "n1": 0.1}
    row = _row(ROWS[0].key, ROWS[0].title)
    row.cpu_ms_per_message = {"n1": 0.1, "ferretdb": 2.0, "postgres": 1.0, "client": 0.1}
    cpu = cpu_table([row])
    assert "| Kafka, FerretDB, PostgreSQL, nginx: ms per message | 3.000 |" in cpu
    assert "| chatmq processes: ms per message | 0.100 |" in cpu
    row.cpu_ms_per_message = {"n1": 0.1, "ferretdb": 2.0}
    assert "| Kafka, FerretDB, nginx: ms per message | 2.000 |" in cpu_table([row])


async def test_prefill_stores_history_in_chunks_with_a_progress_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_chat, "PREFILL_CHUNK", 40)
    settings = Settings.load(None, data_dir=tmp_path)
    await prefill_store(settings, 100, cluster=False)

    assert [line.split(" messages")[0] for line in capsys.readouterr().err.splitlines()] == [
        "bench: prefill: 40/100", "bench: prefill: 80/100", "bench: prefill: 100/100"]
    async with make_store(settings, cluster=False) as store:
        assert await store.count_messages() == 100
        assert await store.count_pending() == 0
        [first] = await store.history(stored_messages(0, 1)[0].conversation, None, 1)
        assert first.client_id.startswith("prefill.")


def test_the_report_line_names_the_prefill() -> None:
    meta = {"mode": "embedded", "run": "full", "started": "2026-01-01T00:00:00+00:00", "commit": "abc",
            "load": {"pairs": 10, "group_size": 5, "duration": 3.0, "window": 20, "prefill": 1_000_000},
            "machine": {"cores": 2, "cpu": "x", "python": "3.11"}}
    assert "1,000,000 messages stored before the run" in report_markdown([], meta)
