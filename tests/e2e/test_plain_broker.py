"""``chatmq broker --allow-anonymous``: a plain MQTT node with no chat logic."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from chatmq.core.ports import free_port
from chatmq.devices.sdk import release_sockets


def test_plain_broker_relays_anonymous_clients(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "broker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "chatmq.run.cli", "broker", "--allow-anonymous",
                                 "--host", "127.0.0.1", "--mqtt-port", str(port)], stdout=out, stderr=out)
    got: list[bytes] = []
    arrived = threading.Event()
    clients: list[mqtt.Client] = []
    try:
        deadline = time.monotonic() + 20
        while f"mqtt://127.0.0.1:{port}" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub")
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub")
        clients += [sub, pub]
        subscribed = threading.Event()
        sub.on_subscribe = lambda *a: subscribed.set()

        def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
            got.append(bytes(m.payload))
            arrived.set()

        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        sub.subscribe("sensors/#", 1)
        assert subscribed.wait(10)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish("sensors/a/temp", b"21.5", qos=1).wait_for_publish(10)
        assert arrived.wait(10)
        assert got == [b"21.5"]
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
            release_sockets(c)
        proc.terminate()
        assert proc.wait(20) == 0, log.read_text()


def test_broker_without_anonymous_explains_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CHATMQ_KAFKA_BOOTSTRAP", "CHATMQ_MONGO_URL")}
    r = subprocess.run([sys.executable, "-m", "chatmq.run.cli", "broker", "--mqtt-port", "1"],
                       capture_output=True, text=True, timeout=60, check=False, env=env)
    assert r.returncode == 2
    assert "kafka_bootstrap" in r.stderr
    assert "mongo_url" in r.stderr
    assert "chatmq serve" in r.stderr
