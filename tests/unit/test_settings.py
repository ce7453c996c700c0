"""Settings precedence and errors."""

import sys
from pathlib import Path

import pytest

from chatmq.core.errors import ConfigError
from chatmq.core.settings import Settings


def test_defaults_come_from_packaged_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHATMQ_CONFIG", raising=False)
    s = Settings.load()
    assert (s.mqtt_port, s.ws_port, s.http_port, s.max_payload) == (1883, 8083, 8000, 65536)


def test_precedence_flag_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("mqtt_port = 1000\nws_port = 1001\nhttp_port = 1002\n")
    monkeypatch.setenv("CHATMQ_WS_PORT", "2001")
    monkeypatch.setenv("CHATMQ_HTTP_PORT", "2002")
    s = Settings.load(cfg, http_port=3002)
    assert (s.mqtt_port, s.ws_port, s.http_port) == (1000, 2001, 3002)


def test_bad_values_are_clear(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("mqtt_port = 99999\n")
    with pytest.raises(ConfigError, match="mqtt_port"):
        Settings.load(cfg)
    cfg.write_text("mqt_port = 1\n")
    with pytest.raises(ConfigError, match="mqt_port"):
        Settings.load(cfg)
    cfg.write_text("mqtt_port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "missing.toml")


def test_signing_key_is_made_once(tmp_path: Path) -> None:
    s = Settings.load(None, data_dir=tmp_path / "d")
    key = s.signing_key()
    assert len(key) >= 32
    assert s.signing_key() == key
    assert (tmp_path / "d" / "jwt.secret").stat().st_mode & 0o077 == 0


def test_topics_come_from_the_declarations_in_config(tmp_path: Path) -> None:
    from chatmq.core.bus.base import TopicSpec
    from chatmq.core.topics import CONTROL, OUTBOX, PRESENCE, TOPICS_FILE, topic_specs

    specs = {t.name: t for t in topic_specs(6, ["n1", "n2"])}
    assert specs[OUTBOX] == TopicSpec(OUTBOX, 6)
    assert {PRESENCE, CONTROL, "chat.deliver.n1", "chat.deliver.n2"} <= set(specs)
    own = tmp_path / "topics.toml"
    own.write_text(TOPICS_FILE.read_text() + '\n[[topic]]\nname = "chat.extra"\npartitions = 3\ncompacted = true\n')
    assert topic_specs(6, [], own)[-1] == TopicSpec("chat.extra", 3, True)
    own.write_text('[[topic]]\nname = "chat.outbox"\npartitions = 0\n')
    with pytest.raises(ConfigError, match="bad entry"):
        topic_specs(6, [], own)
    own.write_text('[[topic]]\nname = "chat.outbox"\n')
    with pytest.raises(ConfigError, match=r"missing chat\.command-results, chat\.connections, "):
        topic_specs(6, [], own)


def test_influx_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CHATMQ_INFLUX_URL", raising=False)
    monkeypatch.delenv("CHATMQ_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    s = Settings.load()
    assert (s.influx_url, s.influx_batch_size, s.telemetry_measurement, s.influx_tags) == (None, 1000, "telemetry", {})
    cfg = tmp_path / "c.toml"
    cfg.write_text('influx_url = "http://influx:8086"\ninflux_tags = { deployment = "prod" }\n')
    monkeypatch.setenv("CHATMQ_METRICS_INTERVAL", "2.5")
    s = Settings.load(cfg)
    assert (s.influx_url, s.influx_tags, s.metrics_interval) == ("http://influx:8086", {"deployment": "prod"}, 2.5)
    monkeypatch.setenv("CHATMQ_INFLUX_TAGS", '{"run": "r1"}')
    assert Settings.load(cfg).influx_tags == {"deployment": "prod", "run": "r1"}  # pydantic-settings merges dicts
    for key, value in (("influx_url", '"influx:8086"'), ("telemetry_measurement", '"bad name"'),
                       ("influx_batch_size", "0")):
        cfg.write_text(f"{key} = {value}\n")
        with pytest.raises(ConfigError, match=key):
            Settings.load(cfg)


def test_a_process_takes_its_switch_interval(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``switch_interval`` (default 0.5 ms, below Python's 5 ms, so the store's thread gets the GIL in
    time) is the process's once it is assembled; out of range is a clear error."""
    from chatmq.run.assembly import Process

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHATMQ_CONFIG", raising=False)
    assert Settings.load().switch_interval == 0.0005
    monkeypatch.setenv("CHATMQ_SWITCH_INTERVAL", "0.002")
    before = sys.getswitchinterval()
    try:
        Process.open(Settings.load(data_dir=tmp_path), "serve", cluster=False)
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)
    monkeypatch.setenv("CHATMQ_SWITCH_INTERVAL", "0")
    with pytest.raises(ConfigError, match="switch_interval"):
        Settings.load()
