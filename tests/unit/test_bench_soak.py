"""``chatmq.bench.soak``: the pure parts of the soak (the verdict on growth, loss and stalls; the
tables; reading open files). ``tests/e2e/test_bench_soak.py`` runs a small soak."""

from __future__ import annotations

import os

from chatmq.bench.soak import ChatResult, Limits, Sample, Wave, read_fd_count, report, verdict, wave_table

LIMITS = Limits(rss_tolerance_mib=32, fd_tolerance=16, max_ping_p99_ms=500)


def wave(index: int, rss_mib: float, fds: int, error: str | None = None) -> Wave:
    after = None if error else Sample(t=float(index), wave=index, clients=0, rss_kib=int(rss_mib * 1024), fds=fds)
    return Wave(index, 10_000, "DISCONNECT" if index % 2 else "reset", connect_seconds=4.0,
                peak_rss_kib=int((rss_mib + 300) * 1024), peak_fds=fds + 10_000, after=after, error=error)


def chat(name: str, *, sent: int = 100, lost: int = 0, p99: float | None = 20.0) -> ChatResult:
    return ChatResult(name, sent, sent, sent - lost, lost, 0, sent - lost, {}, 5.0, p99, p99)


CHATS = [chat("ping"), chat("pairs")]


def test_growth_within_the_tolerance_passes() -> None:
    # the first wave may leave caches behind: the level after it is the baseline
    waves = [wave(1, 200, 30), wave(2, 220, 40), wave(3, 231, 46)]
    assert verdict(waves, CHATS, LIMITS) == []


def test_memory_that_does_not_come_back_fails() -> None:
    waves = [wave(1, 200, 30), wave(2, 230, 30), wave(3, 260, 30)]
    [failure] = verdict(waves, CHATS, LIMITS)
    assert "RSS grew by 60.0 MiB from wave 1 to wave 3 and did not come back (tolerance 32 MiB)" in failure


def test_open_files_that_do_not_come_back_fail() -> None:
    waves = [wave(1, 200, 30), wave(2, 200, 47)]
    [failure] = verdict(waves, CHATS, LIMITS)
    assert "open files grew by 17 from wave 1 to wave 2" in failure


def test_memory_that_comes_back_passes() -> None:
    # high while the clients are on, back after each wave
    waves = [wave(1, 200, 30), wave(2, 400, 30), wave(3, 201, 31)]
    assert verdict(waves, CHATS, LIMITS) == []


def test_a_lost_message_fails() -> None:
    failures = verdict([wave(1, 200, 30), wave(2, 200, 30)], [chat("ping"), chat("pairs", lost=2)], LIMITS)
    assert failures == ["pairs: 2 of 100 messages lost"]


def test_a_stalled_loop_fails_on_the_ping_p99() -> None:
    failures = verdict([wave(1, 200, 30), wave(2, 200, 30)], [chat("ping", p99=900.0), chat("pairs")], LIMITS)
    assert failures == ["ping p99 900.0 ms is above 500 ms: the server's loop stalled"]


def test_a_wave_that_could_not_connect_fails_and_one_wave_is_not_enough() -> None:
    failures = verdict([wave(1, 200, 30), wave(2, 0, 0, error="could not open 10000 idle clients")], CHATS, LIMITS)
    assert failures == ["wave 2: could not open 10000 idle clients", "only 1 wave(s) completed; growth needs two"]


def test_a_chat_that_sent_nothing_fails() -> None:
    failures = verdict([wave(1, 200, 30), wave(2, 200, 30)], [chat("ping", sent=0, p99=None), chat("pairs")], LIMITS)
    assert failures == ["ping: no message was sent"]


def test_the_table_has_a_line_per_wave_and_the_verdict() -> None:
    waves = [wave(1, 200, 30), wave(2, 260, 30)]
    table = wave_table(waves)
    assert table.count("\n") == 1 + len(waves)
    assert "| 1 | 10,000 | DISCONNECT | 4.0 | 2,500 | 500.0 | 10,030 | 200.0 | 30 | 0.0 |" in table
    assert "| 2 | 10,000 | reset |" in table
    text = report(waves, CHATS, verdict(waves, CHATS, LIMITS))
    assert "| ping | 100 | 100 | 100 | 0 | 5.0 / 20.0 / 20.0 | – |" in text
    assert text.rstrip().endswith("(tolerance 32 MiB)")
    assert "verdict: FAIL" in text
    assert "verdict: PASS" in report([waves[0], wave(2, 201, 30)], CHATS, [])


def test_open_files_are_counted_from_proc() -> None:
    before = read_fd_count(os.getpid())
    with open(os.devnull) as _:
        assert read_fd_count(os.getpid()) == before + 1
