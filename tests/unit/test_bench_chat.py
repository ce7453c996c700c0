"""``chatmq.bench.bench_chat``: the pure parts of the chat benchmark (quantiles, pairing, the
report; its packets come from ``chatmq.broker.wire``). Speed is never asserted: the benchmark
measures it (``docs/benchmarks.md``); ``tests/e2e/test_bench_chat.py`` runs it."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from chatmq.bench import bench_chat
from chatmq.bench.bench_chat import (
    DEFAULT_ROWS,
    OFFLINE_GRACE_US,
    ROW_KEYS,
    ROWS,
    BenchUser,
    PresenceTally,
    RowResult,
    StormTimes,
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
    storm_result,
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


def test_the_presence_storm_is_a_row_of_its_own_not_run_by_default() -> None:
    assert "presence_storm" in ROW_KEYS
    assert "presence_storm" not in DEFAULT_ROWS
    assert set(ROW_KEYS) - set(DEFAULT_ROWS) == {"presence_storm"}


def test_presence_storm_accounting_counts_lost_duplicated_extra_and_latency() -> None:
    tally = PresenceTally()
    off_from, on_from = 1_000_000 + OFFLINE_GRACE_US, 20_000_000
    for user in ("a", "b"):
        tally.expect("w", user, "offline", off_from)
        tally.expect("w", user, "online", on_from)
    tally.arrived("w", {"type": "presence", "user": "a", "state": "offline"}, off_from + 100_000)
    tally.arrived("w", {"type": "presence", "user": "b", "state": "offline"}, off_from + 300_000)
    tally.arrived("w", {"type": "presence", "user": "b", "state": "offline"}, off_from + 400_000)  # again
    tally.arrived("w", {"type": "presence", "user": "a", "state": "online"}, on_from + 50_000)
    tally.arrived("b", {"type": "presence", "user": "a", "state": "online"}, on_from + 60_000)  # a reconnecting peer
    assert tally.outstanding() == 1
    assert tally.outstanding("offline") == 0
    spec = next(spec for spec in ROWS if spec.key == "presence_storm")
    row = storm_result(spec, tally, 4, StormTimes(1_000_000, on_from), 0.1, {"serve": 0.5},
                       {"serve": 0.2, "client": 0.04}, [])
    assert (row.sent, row.expected, row.delivered, row.lost, row.duplicated) == (4, 4, 3, 1, 1)
    assert (row.p50_ms, row.p99_ms) == (100.0, 300.0)  # latencies 100, 300 and 50 ms
    assert row.seconds == 19.05  # from the first disconnect to the last change seen (b's online never came)
    # busy: offline 0.3 s after the grace + online 0.05 s; 3 expected and 1 extra envelope, 4 changes
    assert (row.rate, row.send_rate) == (round(4 / 0.35, 1), round(4 / 0.35, 1))
    assert row.cpu_ms_per_message == {"serve": 50.0, "client": 10.0}
    assert any("1 presence envelopes between reconnecting contacts" in note for note in row.notes)
    assert "offline p50 / p99 100.0 / 300.0 ms" in row.notes
    assert "online p50 / p99 50.0 / 50.0 ms" in row.notes
    assert "presence storm" in markdown_table([row])


def test_the_load_generators_collector_is_off_during_a_row_and_back_after() -> None:
    assert gc.isenabled()
    with bench_chat.collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), bench_chat.collector_paused():
        raise RuntimeError("a row failed")
    assert gc.isenabled()
