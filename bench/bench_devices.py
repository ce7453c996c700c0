"""``chatmq bench devices``: device command round trips and shadow updates per second, on the embedded
server or a cluster.

Run ``chatmq bench devices --mode embedded|cluster [--devices N] [--duration S]``. It

1. starts what it measures as ``chatmq bench chat`` does (``bench_chat.deployed``: ``chatmq serve`` on
   free ports, or a ``LocalCluster`` on ``CHATMQ_KAFKA_BOOTSTRAP``/``CHATMQ_MONGO_URL`` with a topic
   prefix and database of its own), with the rate limits raised;
2. registers one owner and ``--devices`` devices (``POST /devices``) and connects each with the SDK's
   ``DeviceClient``: it answers every command at once and reports every shadow delta it gets back;
3. runs two rows for ``--duration`` seconds each, one request on its way per device at a time, from
   ``--clients`` HTTP connections: ``command`` (``POST /devices/{id}/commands``, which waits for the
   device's answer: REST → bus → node → device → node → bus → REST) and ``shadow`` (``PATCH
   /devices/{id}/shadow`` of the desired state: stored by compare-and-swap, the delta sent to the device,
   which reports it back); a row's rate is answers per second, its latency the REST call's;
4. stops everything, prints a Markdown table and writes it to ``--markdown``, every figure to ``--json``.

Exit 1 when a command failed or timed out, or a shadow update was refused.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import urlsplit

import httpx
import typer

from chatmq.bench.bench_broker import BenchError, bench_command, echo, git_commit, machine_info
from chatmq.bench.bench_chat import Mode, deployed, make_users, percentile
from chatmq.devices.device_client import DeviceClient

DEFAULT_JSON = "test-artifacts/bench_devices_{mode}.json"
DEFAULT_MARKDOWN = "test-artifacts/bench_devices_{mode}.md"
ROWS = ("command", "shadow")


@dataclass
class DeviceRow:
    """One row's figures: answers per second while every device had a request on its way, and latency."""

    title: str
    devices: int
    seconds: float
    done: int
    failed: int
    per_second: float
    p50_ms: float | None
    p99_ms: float | None


async def _register_devices(api_url: str, token: str, count: int) -> list[tuple[str, str]]:
    headers = {"Authorization": f"Bearer {token}"}
    sem = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient, i: int) -> tuple[str, str]:
        async with sem:
            r = await client.post("/api/v1/devices", json={"name": f"bench {i}"}, headers=headers)
        if r.status_code != 201:
            raise BenchError(f"register device {i}: {r.status_code} {r.text[:200]}")
        return str(r.json()["device_id"]), str(r.json()["secret"])

    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(count))))


async def _wait_online(api_url: str, token: str, device_ids: list[str], timeout: float = 60.0) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        for device_id in device_ids:
            while not (await client.get(f"/api/v1/devices/{device_id}", headers=headers)).json().get("online"):
                if time.monotonic() > deadline:
                    raise BenchError(f"device {device_id} did not come online in {timeout:g} s")
                await asyncio.sleep(0.1)


async def _row(title: str, api_url: str, token: str, device_ids: list[str], duration: float,
               clients: int) -> DeviceRow:
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    failed = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def loop(client: httpx.AsyncClient, device_id: str, stop_at: float) -> None:
        nonlocal failed
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            t0 = time.perf_counter()
            if title == "command":
                r = await client.post(f"/api/v1/devices/{device_id}/commands", headers=headers,
                                      json={"name": "ping", "params": {"n": n}, "timeout_s": 30})
                ok = r.status_code == 200 and r.json().get("status") == "succeeded"
            else:
                r = await client.patch(f"/api/v1/devices/{device_id}/shadow", headers=headers,
                                       json={"desired": {"setpoint": n}})
                ok = r.status_code == 200
            if ok:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                failed += 1

    async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(loop(client, d, started + duration) for d in device_ids))
        seconds = time.monotonic() - started
    lat = sorted(latencies)
    p50, p99 = percentile(lat, 0.50), percentile(lat, 0.99)
    return DeviceRow(title, len(device_ids), round(seconds, 2), len(lat), failed, round(len(lat) / seconds, 1),
                     None if p50 is None else round(p50, 1), None if p99 is None else round(p99, 1))


def _connect_devices(host: str, port: int, made: list[tuple[str, str]]) -> list[DeviceClient]:
    devices: list[DeviceClient] = []
    try:
        for device_id, secret in made:
            dev = DeviceClient(host, port, device_id, secret)
            dev.on_command = lambda _name, params: params
            dev.shadow.on_delta = lambda state, _version, d=dev: d.shadow.report(state)
            dev.connect(30)
            devices.append(dev)
    except BaseException:
        for dev in devices:
            dev.close()
        raise
    return devices


def run_devices(api_url: str, mqtt_port: int, count: int, duration: float, clients: int) -> list[DeviceRow]:
    [owner] = asyncio.run(make_users(api_url, 1, f"dev{int(time.time()) % 100000}"))
    made = asyncio.run(_register_devices(api_url, owner.token, count))
    host = urlsplit(api_url).hostname or "127.0.0.1"
    echo(f"bench: connecting {count} devices")
    devices = _connect_devices(host, mqtt_port, made)
    try:
        ids = [d for d, _s in made]
        asyncio.run(_wait_online(api_url, owner.token, ids))
        rows = []
        for title in ROWS:
            echo(f"bench: row {title} ({duration:g} s)")
            rows.append(asyncio.run(_row(title, api_url, owner.token, ids, duration, clients)))
        return rows
    finally:
        for dev in devices:
            dev.close()


def markdown_table(rows: list[DeviceRow]) -> str:
    lines = ["| row | devices | answers/s | p50 ms | p99 ms | done | failed |", "|---|---:|---:|---:|---:|---:|---:|"]
    names = {"command": "command round trip (POST /commands, waits for the device)",
             "shadow": "shadow update (PATCH desired; the device reports it back)"}
    for r in rows:
        lines.append(f"| {names.get(r.title, r.title)} | {r.devices} | {r.per_second:,.1f} | {r.p50_ms} | "
                     f"{r.p99_ms} | {r.done:,} | {r.failed} |")
    return "\n".join(lines)


app = typer.Typer(help="The devices benchmark.", no_args_is_help=True, pretty_exceptions_enable=False)


@app.command()
def devices(
    mode: Annotated[str, typer.Option(help="embedded (chatmq serve) or cluster (LocalCluster on Kafka and "
                                           "MongoDB).")] = "embedded",
    count: Annotated[int, typer.Option("--devices", min=1, max=1000, help="Simulated devices.")] = 20,
    duration: Annotated[float, typer.Option(min=0.5, help="Seconds per row.")] = 10.0,
    clients: Annotated[int, typer.Option(min=1, max=1000, help="HTTP connections to the API.")] = 20,
    json_path: Annotated[Path | None, typer.Option("--json", help="Where to write the JSON "
                                                   f"(default {DEFAULT_JSON}).")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown", help="Where to write the report "
                                                       f"(default {DEFAULT_MARKDOWN}).")] = None,
) -> None:
    """Device commands (round trips per second, p50/p99) and shadow updates per second across N devices."""
    if mode not in ("embedded", "cluster"):
        typer.echo("bench: --mode is embedded or cluster", err=True)
        raise typer.Exit(2)
    json_out = json_path or Path(DEFAULT_JSON.format(mode=mode))
    md_out = markdown_path or Path(DEFAULT_MARKDOWN.format(mode=mode))
    started = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix=f"chatmq-bench-devices-{mode}-"))
    try:
        with bench_command("servers stopped"), deployed(cast(Mode, mode), workdir) as deployment:
            rows = run_devices(deployment.api_url, deployment.mqtt_port, count, duration, clients)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta: dict[str, Any] = {"started": started.isoformat(timespec="seconds"), "mode": mode, "devices": count,
                            "duration": duration, "clients": clients, "commit": git_commit(),
                            "machine": machine_info()}
    report = (f"chatmq bench devices, {mode}, {count} devices, {duration:g} s per row, commit {meta['commit']}\n\n"
              + markdown_table(rows) + "\n")
    typer.echo(report)
    for path, text in ((json_out, json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2) + "\n"),
                       (md_out, report)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    echo(f"bench: wrote {json_out} and {md_out}")
    if any(r.failed for r in rows):
        typer.echo("bench: some commands failed or timed out, or shadow updates were refused", err=True)
        raise typer.Exit(1)
