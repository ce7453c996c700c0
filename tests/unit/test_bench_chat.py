"""``chatmq.bench.bench_chat``: the pure parts of the chat benchmark (quantiles, pairing, the
report; its packets come from ``chatmq.broker.wire``). Speed is never asserted: the benchmark
measures it (``docs/benchmarks.md``); ``tests/e2e/test_bench_chat.py`` runs it."""

from __future__ import annotations

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
    report_markdown,
    rows_from_json,
)


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
