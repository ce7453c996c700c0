"""``InfluxWriter`` against a fake InfluxDB write API: batches, retries through outages, malformed points."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from chatmq.services.telemetry.writer import InfluxWriter, WriteAbandonedError, _without_credentials, line
from tests.unit.fake_influx import FakeInflux


def writer_for(fake: FakeInflux, batch_size: int = 1000) -> InfluxWriter:
    return InfluxWriter(fake.url, token="s3cret", org="acme", bucket="b1", batch_size=batch_size,
                        min_backoff=0.01, max_backoff=0.05)


def points(n: int, prefix: str = "p") -> list[str]:
    return [line("m", {"device": f"{prefix}{i}"}, {"v": float(i)}, 1_700_000_000_000 + i) for i in range(n)]


def test_line_escapes_and_skips_empty_tags() -> None:
    assert line("temp", {"device": "d 1", "owner": ""}, {"v": 1.5}, 1_700_000_000_123) == \
        "temp,device=d\\ 1 v=1.5 1700000000123"


def written_total() -> float:
    return REGISTRY.get_sample_value("chatmq_influx_points_total", {"result": "written"}) or 0.0


def test_credentials_in_the_url_are_not_shown() -> None:
    assert _without_credentials("http://admin:hunter2@influx:8086/x") == "http://***@influx:8086/x"
    assert _without_credentials("http://influx:8086") == "http://influx:8086"


async def test_points_go_out_in_batches_with_bucket_org_precision_and_token(influx: FakeInflux) -> None:
    before = written_total()
    async with writer_for(influx, batch_size=10) as writer:
        result = await writer.write(points(25))
    assert (result.written, result.rejected) == (25, 0)
    assert written_total() - before == 25  # chatmq_influx_points_total{result="written"}
    assert [len(r.lines) for r in influx.requests] == [10, 10, 5]
    assert influx.accepted == points(25)
    first = influx.requests[0]
    assert first.query == {"org": "acme", "bucket": "b1", "precision": "ms"}
    assert first.authorization == "Token s3cret"


@pytest.mark.parametrize("status", [500, 503, 429, 401, 404])
async def test_an_outage_is_retried_until_influxdb_takes_the_batch(
    influx: FakeInflux, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    influx.outage, influx.outage_status = 3, status
    with caplog.at_level("DEBUG", logger="chatmq.services.telemetry.writer"):
        async with writer_for(influx) as writer:
            result = await writer.write(points(4))
    assert result.written == 4
    assert [r.status for r in influx.requests] == [status, status, status, 204]
    assert influx.accepted == points(4)
    assert f"HTTP {status}" in caplog.text
    assert "takes writes again" in caplog.text
    assert "s3cret" not in caplog.text


async def test_retry_after_is_honoured(influx: FakeInflux) -> None:
    influx.outage, influx.outage_status, influx.retry_after = 1, 429, "0.3"
    async with writer_for(influx) as writer:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await writer.write(points(1))
        assert loop.time() - started >= 0.3  # the fake asked for 0.3 s; the writer's own backoff is 0.01 s


async def test_a_server_that_is_down_is_retried_until_it_is_up() -> None:
    fake = FakeInflux()
    await fake.up()
    await fake.down()  # keeps its port, now refused
    async with writer_for(fake) as writer:
        pending = asyncio.create_task(writer.write(points(3)))
        await asyncio.sleep(0.2)
        assert not pending.done()
        await fake.up()
        try:
            result = await asyncio.wait_for(pending, 10)
        finally:
            await fake.down()
    assert result.written == 3
    assert fake.accepted == points(3)


async def test_malformed_points_are_found_skipped_and_the_rest_written(influx: FakeInflux) -> None:
    batch = points(8)
    batch[5] = line("m", {"device": "bad"}, {"v": 1.0}, 1)
    influx.malformed = ["device=bad"]
    async with writer_for(influx) as writer:
        result = await writer.write(batch)
    assert (result.written, result.rejected) == (7, 1)
    assert sorted(influx.accepted) == sorted(p for i, p in enumerate(batch) if i != 5)
    assert all("device=bad" not in p for p in influx.accepted)
    assert writer.rejected == 1


async def test_give_up_after_abandons_a_write_influxdb_never_takes(influx: FakeInflux) -> None:
    influx.outage = 10_000
    async with writer_for(influx) as writer:
        with pytest.raises(WriteAbandonedError):
            await writer.write(points(1), give_up_after=0.2)


async def test_stop_wakes_a_retrying_write(influx: FakeInflux) -> None:
    influx.outage = 10_000
    writer = InfluxWriter(influx.url, token=None, org="o", bucket="b", min_backoff=30.0, max_backoff=30.0)
    await writer.start()
    pending = asyncio.create_task(writer.write(points(1)))
    await asyncio.sleep(0.3)
    await writer.stop()
    with pytest.raises(WriteAbandonedError):
        await asyncio.wait_for(pending, 5)
