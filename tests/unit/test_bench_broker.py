"""``chatmq.bench.bench_broker``: the pure parts of the broker benchmark.

Parsing mqttrelay's output, ratios, the Markdown table and JSON, the Mosquitto config, the
MQTT packets of the idle clients and of the fan load (checked against a real amqtt broker
started in-process), fallback sizes and the load-generator runner. No speed is asserted
anywhere: speed is measured by the benchmark itself (``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import typer
from amqtt.broker import Broker
from typer.testing import CliRunner

from chatmq.bench import bench_broker as bb
from chatmq.bench.bench_broker import (
    IdleClientError,
    IdleClients,
    Load,
    Measurement,
    PublishLayout,
    RelayResult,
    RowResult,
    Status,
)
from chatmq.core.ports import free_port

RELAY_LINE = ("port=41234 qos=1 pairs=10 msgs=500000 elapsed=8.39s rate=59610 msg/s "
              "p50=10.6ms p99=34.0ms lost=0")


# --- mqttrelay output ---------------------------------------------------------------------


def test_parse_relay_output_reads_every_field() -> None:
    r = bb.parse_relay_output("some stderr noise\n" + RELAY_LINE + "\n")
    assert r == RelayResult(port=41234, qos=1, pairs=10, total=500000, elapsed_s=8.39, rate=59610.0,
                            p50_ms=10.6, p99_ms=34.0, lost=0)


def test_parse_relay_output_nothing_arrived() -> None:
    r = bb.parse_relay_output("port=1 qos=0 pairs=2 msgs=20 elapsed=0.00s rate=0 msg/s p50=-1.0ms p99=-1.0ms "
                              "lost=20")
    assert r is not None
    assert (r.rate, r.p50_ms, r.p99_ms, r.lost) == (0.0, -1.0, -1.0, 20)


@pytest.mark.parametrize("text", ["", "connack refused\n", "broker closed a connection", "rate=5 msg/s"])
def test_parse_relay_output_without_a_result_line(text: str) -> None:
    assert bb.parse_relay_output(text) is None


def test_format_relay_line_round_trips() -> None:
    r = RelayResult(port=7, qos=0, pairs=3, total=60, elapsed_s=1.25, rate=48.0, p50_ms=2.5, p99_ms=9.5, lost=1)
    assert bb.parse_relay_output(bb.format_relay_line(r)) == r


# --- ratios, table, JSON ------------------------------------------------------------------


def _ok(rate: float, **kw: object) -> Measurement:
    return Measurement(Status.OK, rate=rate, p50_ms=1.0, p99_ms=2.0, lost=0, total=1000, messages_per_pair=100,
                       requested_per_pair=100, **kw)  # type: ignore[arg-type]


def test_ratio() -> None:
    assert bb.ratio(50.0, 200.0) == 0.25
    assert bb.ratio(None, 200.0) is None
    assert bb.ratio(1.0, None) is None
    assert bb.ratio(1.0, 0.0) is None


@pytest.mark.parametrize(("value", "text"), [
    (None, "–"), (0.0412, "0.0412× (4.1%)"), (0.5, "0.5× (50.0%)"), (1.0, "1×"), (52.83, "52.8×"),
])
def test_format_ratio(value: float | None, text: str) -> None:
    assert bb.format_ratio(value) == text


def test_format_figure_marks_fallbacks_losses_and_statuses() -> None:
    assert bb.format_figure(_ok(80123.4), "msg/s") == "80,123 msg/s"
    reduced = _ok(3012.0)
    reduced.requested_per_pair = 50_000
    assert reduced.reduced
    assert bb.format_figure(reduced, "msg/s") == "3,012 msg/s*"
    lost = _ok(10.0)
    lost.status = Status.LOST
    assert bb.format_figure(lost, "msg/s") == "10 msg/s (lost)"
    assert bb.format_figure(Measurement(Status.TIMEOUT), "msg/s") == "timeout"
    assert bb.format_figure(Measurement(Status.NOT_YET), "msg/s") == "not yet"
    assert bb.format_figure(Measurement(Status.OK, rss_kib_per_conn=51.84), "KiB/conn") == "51.8 KiB"


def test_format_latency_and_lost() -> None:
    assert bb.format_latency(_ok(1.0)) == "1.0 / 2.0"
    assert bb.format_latency(Measurement(Status.OK, rate=0.0, p50_ms=-1.0, p99_ms=-1.0)) == "–"
    assert bb.format_latency(Measurement(Status.TIMEOUT)) == "–"
    row = RowResult("r", "r", "msg/s", _ok(1.0), Measurement(Status.TIMEOUT))
    assert bb.format_lost(row) == "0 / –"


def _rows() -> list[RowResult]:
    slow = _ok(100.0)
    slow.messages_per_pair, slow.requested_per_pair = 80, 50_000
    return [
        RowResult("qos0", "QoS 0 relay", "msg/s", _ok(80_000.0), _ok(4_000.0)),
        RowResult("qos0_idle", "QoS 0 relay + 10 idle", "msg/s", _ok(78_400.0), slow, baseline="qos0"),
        RowResult("rss_idle", "RSS per idle TCP connection", "KiB/conn",
                  Measurement(Status.OK, rss_kib_per_conn=5.0), Measurement(Status.OK, rss_kib_per_conn=60.0)),
        RowResult("ws", "WebSocket | connections", "msg/s", Measurement(Status.NOT_YET, note="no client"),
                  Measurement(Status.NOT_YET, note="no client"), notes=["not yet: no client"]),
        RowResult("fanin", "fan-in", "msg/s", _ok(1.0), Measurement(Status.TIMEOUT, note="no result within 30 s")),
    ]


def test_markdown_table_has_one_line_per_row_and_equal_columns() -> None:
    table = bb.markdown_table(_rows())
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 5
    widths = {line.replace("\\|", "").count("|") for line in lines}
    assert widths == {9}
    assert "| QoS 0 relay | 80,000 msg/s | 4,000 msg/s | 0.05× (5.0%) |" in table
    assert "100 msg/s*" in table
    assert "chatmq at 80/pair;" in table
    assert "kept of the qos0 rate: Mosquitto 98%, chatmq 2%" in table
    assert "| 5.0 KiB | 60.0 KiB | 12× |" in table
    assert "| WebSocket \\| connections | not yet |" in table  # a "|" in a cell is escaped
    assert "chatmq: no result within 30 s" in table
    assert "\\* measured with fewer messages" in table


def test_markdown_table_without_fallbacks_has_no_footnote() -> None:
    table = bb.markdown_table(_rows()[:1])
    assert "\\*" not in table


def test_report_json_is_plain_json() -> None:
    data = json.loads(json.dumps(bb.report_json(_rows(), {"mode": "quick"})))
    assert data["meta"] == {"mode": "quick"}
    first = data["rows"][0]
    assert first["key"] == "qos0"
    assert first["ratio"] == pytest.approx(0.05)
    assert first["mosquitto"]["status"] == "ok"
    assert first["chatmq"]["rate"] == 4000.0
    assert data["rows"][1]["chatmq"]["reduced"] is True
    assert data["rows"][3]["chatmq"]["status"] == "not yet"
    assert data["rows"][4]["ratio"] is None


def test_rows_round_trip_through_json() -> None:
    rows = _rows()
    back = bb.rows_from_json(json.loads(json.dumps(bb.report_json(rows, {}))))
    assert back == rows
    assert bb.markdown_table(back) == bb.markdown_table(rows)


def test_text_plot_scales_chatmq_to_mosquitto() -> None:
    plot = bb.text_plot(_rows())
    assert plot.startswith("```text\n")
    assert plot.endswith("```\n")
    lines = plot.splitlines()
    mosq = next(line for line in lines if line.startswith("QoS 0 relay ") and "Mosquitto" in line)
    ours = lines[lines.index(mosq) + 1]
    assert mosq.count("█") == bb.PLOT_WIDTH
    assert mosq.endswith(" 80,000")
    assert ours.count("█") == 2
    assert ours.endswith(" 4,000")
    assert lines[lines.index(mosq) + 3].endswith("█ 100*")  # at least one column, fallback marked
    assert "RSS" not in plot  # KiB rows are not plotted
    assert "fan-in" in plot
    assert lines[-2].endswith("chatmq     timeout")


def test_report_markdown_says_where_it_was_measured() -> None:
    meta = {"mode": "quick", "started": "2026-01-01T00:00:00+00:00", "commit": "abc123", "mosquitto": "2.0.11",
            "amqtt": "0.12.1", "load": {"pairs": 10, "messages": 2000, "size": 64, "idle": 1000},
            "machine": {"cores": 2, "cpu": "Xeon", "python": "3.11.7"}}
    text = bb.report_markdown(_rows(), meta)
    first = text.splitlines()[0]
    assert first.startswith("quick run, 2026-01-01T00:00:00+00:00, commit abc123: 10 pairs × 2,000 messages")
    assert "1,000 idle clients; 2 cores (Xeon), Mosquitto 2.0.11, amqtt 0.12.1" in first
    assert bb.markdown_table(_rows()) in text
    assert bb.text_plot(_rows()) in text


def test_cli_render_prints_the_report_of_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bb.report_json(_rows(), {"mode": "full"})))
    result = CliRunner().invoke(bb.app, ["render", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("full run,")
    assert "| QoS 0 relay | 80,000 msg/s |" in result.output


def test_row_specs_keys_are_unique_and_baselines_exist() -> None:
    specs = bb.row_specs(10_000)
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys))
    assert tuple(keys) == bb.ROW_KEYS
    assert all(s.baseline in keys for s in specs if s.baseline)
    assert {"qos0", "qos1", "qos0_idle", "qos1_idle", "rss_idle"} <= set(keys)
    assert "10,000 idle" in specs[keys.index("qos0_idle")].title


# --- Mosquitto config ---------------------------------------------------------------------


def test_mosquitto_config(tmp_path: Path) -> None:
    text = bb.mosquitto_config(18999, tmp_path / "m.log", as_root=False)
    lines = text.splitlines()
    assert lines[0] == "listener 18999 127.0.0.1"
    for line in ("allow_anonymous true", "max_queued_messages 100000", "persistence false",
                 f"log_dest file {tmp_path / 'm.log'}", "connection_messages false"):
        assert line in lines
    assert "user root" not in lines
    assert "1883" not in text.replace("18999", "")
    assert "user root" in bb.mosquitto_config(18999, tmp_path / "m.log", as_root=True).splitlines()


# --- packets ------------------------------------------------------------------------------


def test_check_handshake() -> None:
    good = bytes.fromhex("20020000" + "9003000101")
    assert bb.check_handshake(good) == 1
    assert bb.check_handshake(bytes.fromhex("20020100" + "9003000100")) == 0  # session present is fine
    for bad, reason in (("20020005" + "9003000101", "CONNACK"), ("20020000" + "9003000180", "refused"),
                        ("20020000" + "9003000201", "SUBACK"), ("200200", "short")):
        with pytest.raises(IdleClientError, match=reason):
            bb.check_handshake(bytes.fromhex(bad))


@pytest.mark.parametrize("qos", [0, 1])
def test_publish_layout(qos: int) -> None:
    layout = PublishLayout("fan/in", qos, 64)
    packet = layout.template()
    assert len(packet) == layout.length == 1 + 1 + 2 + 6 + 2 * qos + 64
    assert packet[0] == 0x30 | (qos << 1)
    assert packet[layout.payload_offset:layout.payload_offset + 8] == bytes(8)
    assert layout.headers_ok(packet * 3)
    assert not layout.headers_ok(packet + b"\x40" + packet[1:])


def test_publish_layout_long_payload_has_two_length_bytes() -> None:
    layout = PublishLayout("t", 1, 200)
    assert layout.length == len(layout.template()) == 1 + 2 + 2 + 1 + 2 + 200


def test_pubacks_for_answers_every_packet_in_order() -> None:
    layout = PublishLayout("t", 1, 8)
    chunk = bytearray(layout.template() * 3)
    for k, pid in enumerate((1, 300, 65000)):
        off = k * layout.length + layout.packet_id_offset
        chunk[off:off + 2] = pid.to_bytes(2, "big")
    assert bb.pubacks_for(bytes(chunk), layout).hex() == "40020001" + "4002012c" + "4002fde8"


class _FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def test_receiver_counts_across_split_reads_and_acks() -> None:
    layout = PublishLayout("t", 1, 16)
    stream = layout.template() * 40
    counted: list[int] = []
    receiver = bb._Receiver(layout, 40, counted.append)
    transport = _FakeTransport()
    for i in range(0, len(stream), 37):  # reads that split packets anywhere
        receiver.feed(stream[i:i + 37], transport)  # type: ignore[arg-type]
    assert receiver.count == sum(counted) == 40
    assert receiver.error is None
    assert len(transport.written) == 4 * 40
    assert len(receiver.latencies_ns) == 40 // bb.SAMPLE_EVERY + 1


def test_receiver_stops_on_a_foreign_packet() -> None:
    layout = PublishLayout("t", 0, 16)
    receiver = bb._Receiver(layout, 2, lambda n: None)
    transport = _FakeTransport()
    receiver.feed(b"\xd0" + layout.template()[1:] + layout.template(), transport)  # type: ignore[arg-type]
    assert receiver.error is not None
    assert transport.closed


# --- against a real amqtt broker ----------------------------------------------------------


@pytest.fixture
async def amqtt_broker() -> AsyncIterator[tuple[Broker, int]]:
    port = free_port()
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    try:
        yield broker, port
    finally:
        await broker.shutdown()


async def test_idle_clients_connect_and_subscribe(amqtt_broker: tuple[Broker, int]) -> None:
    broker, port = amqtt_broker
    clients = IdleClients("127.0.0.1", port, prefix="t")
    await clients.open(30, concurrency=8)
    try:
        assert len(clients) == 30
        for _ in range(100):  # the broker records the subscription just after it sends SUBACK
            if sum(f.startswith("idle/t/") for f in broker._subscriptions) == 30:
                break
            await asyncio.sleep(0.01)
        assert {f for f in broker._subscriptions if f.startswith("idle/t/")} == {f"idle/t/{i}" for i in range(30)}
        assert await asyncio.to_thread(bb.mqtt_ping, "127.0.0.1", port)  # the broker runs on this loop
    finally:
        await clients.close()
    assert len(clients) == 0
    await clients.close()  # twice is harmless


async def test_idle_clients_report_a_broker_that_is_not_there() -> None:
    clients = IdleClients("127.0.0.1", free_port())
    with pytest.raises(IdleClientError, match="could not open"):
        await clients.open(3, timeout=2.0, attempts=1)
    assert len(clients) == 0


@pytest.mark.parametrize(("mode", "qos"), [("fanin", 0), ("fanin", 1), ("fanout", 0), ("fanout", 1)])
async def test_fan_load_delivers_everything(amqtt_broker: tuple[Broker, int], mode: str, qos: int) -> None:
    _, port = amqtt_broker
    result, error = await bb.fan_load("127.0.0.1", port, mode, 3, 40, qos, 64, deadline=60)
    assert error is None
    assert (result.total, result.lost, result.pairs, result.qos) == (120, 0, 3, qos)
    assert 0 < result.p50_ms <= result.p99_ms


async def test_fan_load_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="fanin, fanout, shared or pairs"):
        await bb.fan_load("127.0.0.1", 1, "sideways", 1, 1, 0, 64)


def test_mqtt_ping_without_a_broker() -> None:
    assert not bb.mqtt_ping("127.0.0.1", free_port(), timeout=1.0)


# --- sizes, commands, the runner ----------------------------------------------------------


def test_ladder_sizes() -> None:
    assert bb.ladder_sizes(Load(messages=50_000)) == [80, 2_000, 50_000]
    assert bb.ladder_sizes(Load(messages=50_000, ladder=False)) == [50_000]
    assert bb.ladder_sizes(Load(messages=100)) == [10, 100]
    assert bb.ladder_sizes(Load(messages=5)) == [5]


def _fake_run(rate: float, timeout_from: int | None = None) -> tuple[list[int], Callable[[int], Measurement]]:
    """A load generator that relays ``rate`` msg/s for 10 publishers, or times out from a size on."""
    calls: list[int] = []

    def run(messages: int) -> Measurement:
        calls.append(messages)
        if timeout_from is not None and messages >= timeout_from:
            return Measurement(Status.TIMEOUT, messages_per_pair=messages, seconds=30.0, note="no result")
        return Measurement(Status.OK, rate=rate, p50_ms=1.0, p99_ms=2.0, lost=0, total=10 * messages,
                           messages_per_pair=messages, seconds=10 * messages / rate)

    return calls, run


def test_run_ladder_climbs_to_the_full_size_on_a_fast_broker() -> None:
    calls, run = _fake_run(100_000.0)
    m = bb.run_ladder(run, Load(messages=50_000, row_timeout=30))
    assert calls == [80, 2_000, 50_000]
    assert m.messages_per_pair == 50_000
    assert not m.reduced
    assert m.seconds == pytest.approx(10 * (80 + 2_000 + 50_000) / 100_000)


def test_run_ladder_stops_where_the_next_size_would_overrun() -> None:
    calls, run = _fake_run(5_000.0)  # 500,000 messages would take 100 s
    m = bb.run_ladder(run, Load(messages=50_000, row_timeout=30))
    assert calls == [80, 2_000]
    assert m.reduced
    assert (m.messages_per_pair, m.requested_per_pair) == (2_000, 50_000)
    assert m.note == "50,000/pair would take about 100 s at this rate"


def test_run_ladder_restarts_the_broker_after_a_timeout() -> None:
    resets: list[bool] = []
    calls, run = _fake_run(100_000.0, timeout_from=50_000)
    m = bb.run_ladder(run, Load(messages=50_000, row_timeout=30), reset=lambda: resets.append(True))
    assert calls == [80, 2_000, 50_000]
    assert resets == [True]
    assert m.status is Status.OK
    assert m.messages_per_pair == 2_000
    assert m.note == "50,000/pair: timeout"


def test_run_ladder_reports_a_timeout_when_nothing_finished() -> None:
    resets: list[bool] = []
    calls, run = _fake_run(1.0, timeout_from=0)
    m = bb.run_ladder(run, Load(messages=50_000, row_timeout=30), reset=lambda: resets.append(True))
    assert calls == [80]
    assert resets == [True]
    assert m.status is Status.TIMEOUT
    assert m.rate is None
    assert m.requested_per_pair == 50_000


def test_connection_rate_rows() -> None:
    fast = Measurement(Status.OK, conn_rate=3030.3)
    slow = Measurement(Status.OK, conn_rate=44.2)
    row = RowResult("connect_idle", "connecting", "conn/s", fast, slow)
    assert bb.format_figure(fast, "conn/s") == "3,030 conn/s"
    assert row.ratio == pytest.approx(44.2 / 3030.3)
    assert "RSS" not in bb.text_plot([row])
    assert "connecting" not in bb.text_plot([row])  # only msg/s rows are plotted


def test_load_commands() -> None:
    load = Load(pairs=10, size=64, row_timeout=30)
    specs = {s.key: s for s in bb.row_specs(10)}
    relay = bb.load_command(specs["qos1"], Path("/x/mqttrelay"), 5000, load, 123)
    assert relay == ["/x/mqttrelay", "127.0.0.1", "5000", "10", "123", "1", "64"]
    v5 = bb.load_command(specs["qos0_v5"], Path("/x/mqttrelay"), 5000, load, 123)
    assert v5 == ["/x/mqttrelay", "127.0.0.1", "5000", "10", "123", "0", "64", "5"]  # mqttrelay's VERSION
    fan = bb.load_command(specs["fanout"], Path("/x/mqttrelay"), 5000, load, 123)
    assert fan[:4] == [sys.executable, "-m", "chatmq.bench.bench_broker", "fanload"]
    assert fan[4:11] == ["fanout", "127.0.0.1", "5000", "10", "123", "1", "64"]
    assert fan[11] == "--deadline"
    assert float(fan[12]) > load.row_timeout


def test_run_load_once_parses_what_the_generator_printed() -> None:
    cmd = [sys.executable, "-c", f"print({RELAY_LINE!r})"]
    m = bb.run_load_once(cmd, timeout=60, messages=50_000)
    assert m.status is Status.OK
    assert (m.rate, m.p99_ms, m.lost, m.total, m.messages_per_pair) == (59610.0, 34.0, 0, 500000, 50_000)


def test_run_load_once_counts_losses() -> None:
    line = RELAY_LINE.replace("lost=0", "lost=7")
    m = bb.run_load_once([sys.executable, "-c", f"print({line!r}); raise SystemExit(1)"], timeout=60, messages=1)
    assert m.status is Status.LOST
    assert m.lost == 7
    assert "7 of 500,000 lost" in m.note


def test_run_load_once_failure_and_timeout() -> None:
    failed = bb.run_load_once([sys.executable, "-c", "import sys; sys.exit('connack refused')"], timeout=60,
                              messages=1)
    assert failed.status is Status.FAILED
    assert "connack refused" in failed.note
    timed_out = bb.run_load_once([sys.executable, "-c", "print('started', flush=True); import time; "
                                  "time.sleep(60)"], timeout=1.0, messages=9)
    assert timed_out.status is Status.TIMEOUT
    assert timed_out.rate is None
    assert "at 9/pair" in timed_out.note


# --- process helpers and the command line ---------------------------------------------------


def test_proc_readers_on_this_process() -> None:
    import os

    assert bb.read_rss_kib(os.getpid()) > 0
    assert bb.read_cpu_seconds(os.getpid()) > 0


def test_raise_nofile_never_lowers_the_limit() -> None:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert bb.raise_nofile(16) == soft


def test_ensure_relay_reports_a_missing_source(tmp_path: Path) -> None:
    with pytest.raises(bb.BenchError, match="not found"):
        bb.ensure_relay(tmp_path / "nope.c", tmp_path / "bin" / "mqttrelay")


def test_ensure_relay_builds_once_and_rebuilds_when_newer(tmp_path: Path) -> None:
    src = tmp_path / "hello.c"
    src.write_text("int main(void) { return 0; }\n")
    out = tmp_path / "bin" / "tool"
    assert bb.ensure_relay(src, out) == out
    built = out.stat().st_mtime_ns
    assert bb.ensure_relay(src, out) == out
    assert out.stat().st_mtime_ns == built
    later = built / 1e9 + 10
    import os

    os.utime(src, (later, later))
    bb.ensure_relay(src, out)
    assert out.stat().st_mtime_ns != built


def test_cli_rejects_unknown_rows() -> None:
    result = CliRunner().invoke(bb.app, ["broker", "--rows", "qos0,bogus"])
    assert result.exit_code == 2
    assert "unknown rows: bogus" in result.output


def test_cli_help_lists_the_broker_command() -> None:
    result = CliRunner().invoke(bb.app, ["--help"])
    assert result.exit_code == 0
    assert "broker" in result.output
    assert "fanload" not in result.output


async def test_fan_load_pairs_at_a_rate_delivers_everything(amqtt_broker: tuple[Broker, int]) -> None:
    _, port = amqtt_broker
    result, error = await bb.fan_load("127.0.0.1", port, "pairs", 3, 20, 1, 64, deadline=60, rate=600)
    assert error is None
    assert (result.total, result.lost, result.pairs) == (60, 0, 3)
    assert result.elapsed_s >= 0.05  # 20 per publisher at 200/s each: paced, not flat out


def test_websocket_frames_carry_their_payload() -> None:
    frame = bb.ws_frame(b"\x10\x02ab")
    assert frame[0] == 0x82
    assert frame[1] == 0x80 | 4  # masked, 4 bytes
    mask = frame[2:6]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(frame[6:])) == b"\x10\x02ab"
    server = b"\x82\x04\x20\x02\x00\x00" + b"\x89\x00" + b"\x82\x7e\x00\x80" + b"x" * 128 + b"\x82\x05ab"
    frames, rest = bb.ws_unframe(server)
    assert frames == [(2, b"\x20\x02\x00\x00"), (9, b""), (2, b"x" * 128)]
    assert rest == b"\x82\x05ab"


async def test_websocket_idle_clients_connect_and_subscribe_on_the_plain_node() -> None:
    from chatmq.broker.plain import PlainBroker

    port, ws_port = free_port(), free_port()
    node = PlainBroker("127.0.0.1", port, ws_port)
    await node.start()
    clients = bb.WsIdleClients("127.0.0.1", ws_port, prefix="w")
    try:
        await clients.open(20, concurrency=5)
        assert len(clients) == 20
        assert node.router.index.subscriber_count() == 20
    finally:
        await clients.close()
        await node.shutdown()


def test_half_rate_rows_report_p99_lower_is_better() -> None:
    fast = bb.Measurement(Status.OK, rate=1000.0, p50_ms=1.0, p99_ms=4.0)
    slow = bb.Measurement(Status.OK, rate=1000.0, p50_ms=2.0, p99_ms=8.0)
    row = bb.RowResult("qos1_half", "QoS 1 relay at half its max rate", "p99 ms", slow, fast)
    assert row.ratio == 0.5
    assert bb.format_figure(fast, "p99 ms") == "p99 4.0 ms"


def test_a_bench_error_ends_a_command_with_exit_1_and_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info, bb.bench_command("server stopped"):
        raise bb.BenchError("the server did not start")
    assert info.value.exit_code == 1
    assert capsys.readouterr().err == "bench: the server did not start\n"


def test_sigterm_stops_a_command_as_ctrl_c_does(capsys: pytest.CaptureFixture[str]) -> None:
    def terminated() -> None:
        with bb.bench_command("server stopped"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal interrupts this

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(typer.Exit) as info:
        terminated()
    assert info.value.exit_code == 130
    assert capsys.readouterr().err == "bench: interrupted; server stopped\n"
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_default_relay_source_is_in_the_repo_and_builds(tmp_path: Path) -> None:
    """``bench broker`` without ``--relay-src`` works in a fresh clone: its source ships beside the module."""
    assert bb.DEFAULT_RELAY_SRC.is_file()
    assert bb.DEFAULT_RELAY_SRC.parent == Path(bb.__file__).resolve().parent
    out = bb.ensure_relay(bb.DEFAULT_RELAY_SRC, tmp_path / "bin" / "mqttrelay")
    assert out.is_file()
