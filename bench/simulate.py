"""``chatmq devices simulate``: simulated users and devices that chat and publish telemetry.

A demonstration and smoke check of a running chatmq (embedded or cluster), through the public
contract only (REST + MQTT, the Python SDK):

1. registers ``--count`` users ``sim-<run>-<n>`` (password ``--password``, else one generated
   and printed), logs each in, registers one IoT device per user (``POST /devices``) and
   connects both over MQTT (TCP, or WebSocket with ``--ws``); with three users or more the
   first one makes a group of up to 20 of them;
2. for ``--duration`` seconds every user sends about ``--rate`` messages per second, each to
   the next user in a ring, and every tenth to the group; recipients mark each message read
   (the SDK answers ``delivered`` itself), so receipts flow back; every device publishes a
   reading (temperature, humidity, battery) every ``--telemetry-interval`` seconds; every user
   sends its device a command over MQTT every ``--command-interval`` seconds (``blink``, answered
   by the device with what it did). Each device reports its shadow (firmware, led) when it
   connects and applies every desired change it is sent (reporting it back), and runs the jobs
   it is sent (``chatmq devices jobs create``), answering ``succeeded`` with the document it ran;
3. waits up to ``--drain`` seconds until every message was acked and arrived at every
   recipient, showing progress on stderr all along (one updating line on a terminal, a line
   every 5 s otherwise);
4. prints a summary (messages sent/acked/delivered/lost, receipts, readings, commands sent/answered,
   shadow reports, jobs run, errors, delivery and command latency p50/p99) and writes it as JSON to
   ``--json``; disconnects; the accounts and devices stay, so one can log in to the web client as a
   simulated user and look around.

Exit code 0 when every message arrived, 1 when something was lost or the server refused
something, 2 on usage errors. It is not a benchmark (``chatmq bench chat`` is).
"""

from __future__ import annotations

import math
import random
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import orjson
import typer

from chatmq.bench.bench_chat import percentile
from chatmq.devices.device_client import DeviceClient
from chatmq.devices.sdk import ApiError, ChatClient, ChatClientError, Envelope, Transport, new_client_id

app = typer.Typer(name="devices", help="Simulated devices.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)

T = TypeVar("T")
GROUP_LIMIT = 20
GROUP_EVERY = 10  # every tenth message of a group member goes to the group


@dataclass
class Tally:
    """What the simulation counted; ``summary`` is the JSON written by ``--json``."""

    users: int = 0
    devices: int = 0
    online: int = 0
    sent: int = 0
    acked: int = 0
    expected: int = 0  # deliveries expected: one per recipient of every message
    delivered: int = 0
    duplicates: int = 0
    receipts: int = 0
    readings: int = 0
    commands_sent: int = 0
    commands_answered: int = 0
    shadow_reports: int = 0
    jobs_run: int = 0
    jobs_expected: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    command_latencies_ms: list[float] = field(default_factory=list)

    def summary(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        cmd = sorted(self.command_latencies_ms)
        return {
            "users": self.users, "devices": self.devices, "seconds": round(seconds, 2),
            "messages_sent": self.sent, "messages_acked": self.acked,
            "deliveries_expected": self.expected, "deliveries": self.delivered,
            "lost": max(0, self.expected - self.delivered), "duplicates": self.duplicates,
            "receipts": self.receipts, "readings": self.readings, "errors": list(self.errors),
            "latency_ms_p50": _rounded(percentile(lat, 0.50)), "latency_ms_p99": _rounded(percentile(lat, 0.99)),
            "commands_sent": self.commands_sent, "commands_answered": self.commands_answered,
            "command_ms_p50": _rounded(percentile(cmd, 0.50)), "command_ms_p99": _rounded(percentile(cmd, 0.99)),
            "shadow_reports": self.shadow_reports, "jobs_run": self.jobs_run, "jobs_expected": self.jobs_expected,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class SimUser:
    index: int
    username: str
    client: ChatClient
    device: DeviceClient | None = None
    group: str | None = None


class Simulation:
    """The simulated users and devices of one run; thread-safe counters in ``tally``."""

    def __init__(self, api_url: str, mqtt_host: str, mqtt_port: int, transport: Transport, password: str) -> None:
        self.api_url, self.mqtt_host, self.mqtt_port = api_url, mqtt_host, mqtt_port
        self.transport: Transport = transport
        self.password = password
        self.run = secrets.token_hex(3)
        self.users: list[SimUser] = []
        self.tally = Tally()
        self._lock = threading.Lock()
        # client id → (sent at, recipients still to receive it)
        self._waiting: dict[str, tuple[float, set[str]]] = {}
        self._commands: dict[str, float] = {}  # client id of a command → sent at
        self._rng = random.Random()

    # ------------------------------------------------------------------ setup

    def setup(self, count: int, progress: Callable[[str], None]) -> None:
        """Register, log in and connect ``count`` users and their devices (8 at a time)."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            for user in pool.map(self._make_user, range(count)):
                self.users.append(user)
                progress(f"setting up: {len(self.users)}/{count} users and devices connected")
        members = [u.client.user_id for u in self.users[:GROUP_LIMIT] if u.client.user_id]
        if len(self.users) >= 3:
            group = _retrying(lambda: self.users[0].client.create_group(f"sim {self.run}", members[1:]))
            for user in self.users[:GROUP_LIMIT]:
                user.group = str(group["group_id"])

    def start_jobs(self) -> None:
        """Every user starts a job on its devices (the simulated device runs it and reports ``succeeded``)."""
        for user in self.users:
            with self._lock:
                self.tally.jobs_expected += 1
            _retrying(partial(user.client.create_job, {"firmware": "1.1", "sim": self.run}))

    def _make_user(self, index: int) -> SimUser:
        username = f"sim-{self.run}-{index:03d}"
        client = ChatClient(self.api_url, self.mqtt_host, self.mqtt_port, transport=self.transport)
        user = SimUser(index, username, client)
        _retrying(lambda: client.register(username, self.password, display_name=f"Simulated {index}"))
        _retrying(lambda: client.login(username, self.password))
        client.on_message = lambda env: self._received(user, env)
        client.on_ack = self._acked
        client.on_receipt = self._receipt
        client.on_error = lambda env: self._error(f"{username}: {env.get('code')}: {env.get('reason')}")
        client.on_command_result = self._command_result
        client.connect()
        creds = _retrying(lambda: client.create_device(f"sensor {index}"))
        device = DeviceClient(self.mqtt_host, self.mqtt_port, str(creds["device_id"]), str(creds["secret"]),
                              transport=self.transport)
        device.on_error = lambda env: self._error(f"device {index}: {env.get('code')}: {env.get('reason')}")
        self._behave(device)
        device.connect()
        self._report(device, {"firmware": "1.0", "led": "off"})
        user.device = device
        with self._lock:
            self.tally.users += 1
            self.tally.devices += 1
        return user

    # ------------------------------------------------------------------ traffic

    def send_one(self, user: SimUser, n: int) -> None:
        """User ``user``'s ``n``-th message: to the group every ``GROUP_EVERY``-th time, else the next user."""
        body = {"text": f"hello #{n} from {user.username}", "sim": self.run}
        client_id = new_client_id()
        if user.group is not None and n % GROUP_EVERY == GROUP_EVERY - 1:
            recipients = {str(u.client.user_id) for u in self.users[:GROUP_LIMIT] if u is not user}
        else:
            peer = self.users[(user.index + 1) % len(self.users)]
            recipients = {str(peer.client.user_id)}
        with self._lock:  # registered before sending: the ack or the delivery may come at once
            self._waiting[client_id] = (time.monotonic(), recipients)
            self.tally.sent += 1
            self.tally.expected += len(recipients)
        if len(recipients) > 1:
            user.client.send_group(str(user.group), body, client_id=client_id)
        else:
            user.client.send(next(iter(recipients)), body, client_id=client_id)

    def _behave(self, device: DeviceClient) -> None:
        """What a simulated device does: answers commands, applies desired shadow changes, runs jobs."""
        def command(name: str, params: dict[str, Any]) -> dict[str, Any]:
            if name == "fail":
                raise RuntimeError("asked to fail")
            return {"did": name, **params}

        def job(_job_id: str, document: dict[str, Any]) -> dict[str, Any]:
            with self._lock:
                self.tally.jobs_run += 1
            return {"ran": document}

        device.on_command = command
        device.on_job = job
        device.shadow.on_delta = lambda state, _version: self._report(device, state)

    def _report(self, device: DeviceClient, state: dict[str, Any]) -> None:
        device.shadow.report(state)
        with self._lock:
            self.tally.shadow_reports += 1

    def command_one(self, user: SimUser, n: int) -> None:
        """User ``user``'s ``n``-th command to its own device, over MQTT."""
        if user.device is None:
            return
        client_id = new_client_id()
        with self._lock:
            self._commands[client_id] = time.monotonic()
            self.tally.commands_sent += 1
        user.client.send_command(user.device.device_id, "blink", {"n": n}, client_id=client_id)

    def read_one(self, user: SimUser) -> None:
        """One reading from ``user``'s device."""
        if user.device is None:
            return
        t = time.time()
        reading = {"temperature": round(21 + 3 * math.sin(t / 60 + user.index) + self._rng.gauss(0, 0.2), 2),
                   "humidity": round(45 + self._rng.uniform(-5, 5), 1),
                   "battery": round(max(0.0, 100 - (t % 3600) / 36), 1)}
        user.device.publish(reading)
        with self._lock:
            self.tally.readings += 1

    def pending(self) -> int:
        """Deliveries still expected."""
        with self._lock:
            return self.tally.expected - self.tally.delivered

    def unacked(self) -> int:
        with self._lock:
            return (self.tally.sent - self.tally.acked + self.tally.commands_sent - self.tally.commands_answered
                    + max(0, self.tally.jobs_expected - self.tally.jobs_run))

    # ------------------------------------------------------------------ callbacks (paho threads)

    def _received(self, user: SimUser, env: Envelope) -> None:
        client_id = env.get("client_id")
        with self._lock:
            waiting = self._waiting.get(str(client_id))
            me = str(user.client.user_id)
            if waiting is None or me not in waiting[1]:
                self.tally.duplicates += 1
                return
            waiting[1].discard(me)
            self.tally.delivered += 1
            self.tally.latencies_ms.append((time.monotonic() - waiting[0]) * 1000)
        if isinstance(env.get("id"), str):
            user.client.mark_read([env["id"]])

    def _acked(self, env: Envelope) -> None:
        with self._lock:
            self.tally.acked += 1

    def _command_result(self, env: Envelope) -> None:
        with self._lock:
            sent = self._commands.pop(str(env.get("id")), None)
            if sent is None:
                return
            self.tally.commands_answered += 1
            self.tally.command_latencies_ms.append((time.monotonic() - sent) * 1000)
            if env.get("status") != "succeeded":
                self.tally.errors.append(f"command {env.get('id')}: {env.get('status')}: {env.get('error')}")

    def _receipt(self, env: Envelope) -> None:
        with self._lock:
            self.tally.receipts += 1

    def _error(self, text: str) -> None:
        with self._lock:
            self.tally.errors.append(text)

    def online(self) -> int:
        return sum(1 for u in self.users if u.client.connected)

    def close(self) -> None:
        for user in self.users:
            if user.device is not None:
                user.device.close()
            user.client.close()


def _retrying(call: Callable[[], T], attempts: int = 20) -> T:
    """``call()``, waiting and retrying when the server answers 429 (login and register are rate limited)."""
    for attempt in range(attempts):
        try:
            return call()
        except ApiError as exc:
            if exc.status_code != 429 or attempt == attempts - 1:
                raise
            time.sleep(min(5.0, 0.5 * 2 ** min(attempt, 4)))
    raise AssertionError("unreachable")


class Progress:
    """One status line on stderr: rewritten in place on a terminal, else printed every 5 s."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, line: str, force: bool = False) -> None:
        now = time.monotonic()
        if self._tty:
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
        elif force or now - self._last >= 5.0:
            self._last = now
            print(line, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self._tty:
            sys.stderr.write("\n")


def _status(sim: Simulation, phase: str) -> str:
    t = sim.tally
    return (f"{phase} · online {sim.online()}/{t.users} · sent {t.sent} · acked {t.acked} · "
            f"delivered {t.delivered}/{t.expected} · receipts {t.receipts} · readings {t.readings} · "
            f"commands {t.commands_answered}/{t.commands_sent} · errors {len(t.errors)}")


def run_traffic(sim: Simulation, duration: float, rate: float, telemetry_interval: float,
                progress: Progress, command_interval: float = 5.0) -> None:
    """Send and publish on a schedule for ``duration`` seconds (one scheduling thread)."""
    start = time.monotonic()
    rng = random.Random()
    next_send = [start + rng.uniform(0, 1 / rate) for _ in sim.users]
    next_read = [start + rng.uniform(0, telemetry_interval) for _ in sim.users]
    next_command = [start + rng.uniform(0, command_interval) for _ in sim.users]
    counts = [0] * len(sim.users)
    commands = [0] * len(sim.users)
    while (now := time.monotonic()) < start + duration:
        for i, user in enumerate(sim.users):
            if now >= next_send[i]:
                sim.send_one(user, counts[i])
                counts[i] += 1
                next_send[i] += rng.expovariate(rate)
            if now >= next_read[i]:
                sim.read_one(user)
                next_read[i] += telemetry_interval
            if now >= next_command[i]:
                sim.command_one(user, commands[i])
                commands[i] += 1
                next_command[i] += command_interval
        progress(_status(sim, f"[{now - start:4.0f}s/{duration:g}s]"))
        time.sleep(0.02)


def drain(sim: Simulation, timeout: float, progress: Progress) -> None:
    """Wait up to ``timeout`` s for every ack and delivery."""
    deadline = time.monotonic() + timeout
    while (sim.pending() or sim.unacked()) and time.monotonic() < deadline:
        progress(_status(sim, "[draining]"))
        time.sleep(0.1)


def render(summary: dict[str, Any]) -> str:
    """The summary as a small table."""
    rows = [("users / devices", f"{summary['users']} / {summary['devices']}"),
            ("messages sent / acked", f"{summary['messages_sent']} / {summary['messages_acked']}"),
            ("deliveries / expected", f"{summary['deliveries']} / {summary['deliveries_expected']}"),
            ("lost", str(summary["lost"])), ("duplicates dropped", str(summary["duplicates"])),
            ("receipts back to senders", str(summary["receipts"])),
            ("telemetry readings", str(summary["readings"])),
            ("commands answered / sent", f"{summary['commands_answered']} / {summary['commands_sent']}"),
            ("command round trip p50 / p99 (ms)", f"{summary['command_ms_p50']} / {summary['command_ms_p99']}"),
            ("shadow reports / jobs run", f"{summary['shadow_reports']} / {summary['jobs_run']}"),
            ("errors", str(len(summary["errors"]))),
            ("delivery latency p50 / p99 (ms)", f"{summary['latency_ms_p50']} / {summary['latency_ms_p99']}")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


@contextmanager
def _friendly_errors() -> Iterator[None]:
    try:
        yield
    except ChatClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


@app.command()
def simulate(
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1000, help="Simulated users, one device each.")]
    = 10,
    server: Annotated[str, typer.Option("--server", envvar="CHATMQ_SERVER", help="REST base URL.")]
    = "http://127.0.0.1:8000",
    mqtt_host: Annotated[str | None, typer.Option("--mqtt-host", help="MQTT host (default: host of --server).")]
    = None,
    mqtt_port: Annotated[int | None, typer.Option("--mqtt-port", help="MQTT port (default 1883, 8083 with --ws).")]
    = None,
    ws: Annotated[bool, typer.Option("--ws", help="MQTT over WebSocket (path /mqtt).")] = False,
    duration: Annotated[float, typer.Option("--duration", min=0.0, help="Seconds of traffic.")] = 30.0,
    rate: Annotated[float, typer.Option("--rate", min=0.01, max=100.0, help="Messages per second per user.")]
    = 0.5,
    telemetry_interval: Annotated[float, typer.Option("--telemetry-interval", min=0.05,
                                                      help="Seconds between one device's readings.")] = 2.0,
    command_interval: Annotated[float, typer.Option("--command-interval", min=0.05,
                                                    help="Seconds between the commands a user sends its device.")]
    = 5.0,
    drain_s: Annotated[float, typer.Option("--drain", min=0.0, help="Seconds to wait for the last deliveries.")]
    = 30.0,
    password: Annotated[str | None, typer.Option("--password", envvar="CHATMQ_SIM_PASSWORD",
                                                 help="Password of the simulated users (default: generated).")]
    = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the summary here as JSON.")] = None,
) -> None:
    """Simulated users and devices that chat, publish telemetry and answer commands, to show the system working."""
    host = mqtt_host or urlsplit(server).hostname or "127.0.0.1"
    port = mqtt_port or (8083 if ws else 1883)
    shown_password = password is None
    password = password or secrets.token_urlsafe(12)
    sim = Simulation(server, host, port, "websockets" if ws else "tcp", password)
    progress = Progress()
    started = time.monotonic()
    try:
        with _friendly_errors():
            sim.setup(count, lambda line: progress(line))
            progress(_status(sim, "[ready]"), force=True)
            sim.start_jobs()
            run_traffic(sim, duration, rate, telemetry_interval, progress, command_interval)
            drain(sim, drain_s, progress)
            progress(_status(sim, "[done]"), force=True)
    finally:
        progress.done()
        sim.close()
    summary = sim.tally.summary(time.monotonic() - started)
    summary["run"] = sim.run
    summary["usernames"] = [u.username for u in sim.users]
    print(f"simulation {sim.run}: {count} users sim-{sim.run}-000 … against {server}")
    if shown_password:
        print(f"log in as any of them (e.g. in the web client) with the password {password}")
    print(render(summary))
    for line in summary["errors"][:10]:
        print(f"  error: {line}")
    if json_out is not None:
        json_out.write_bytes(orjson.dumps({**summary, "server": server}, option=orjson.OPT_INDENT_2))
    if (summary["lost"] or summary["messages_acked"] < summary["messages_sent"] or summary["errors"]
            or summary["commands_answered"] < summary["commands_sent"]
            or summary["jobs_run"] < summary["jobs_expected"]):
        raise typer.Exit(1)
