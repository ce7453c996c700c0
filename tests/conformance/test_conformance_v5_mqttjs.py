"""Interoperability: MQTT.js 5 (the web client's MQTT library, ``web/node_modules/mqtt``) as an MQTT 5
client of the plain node, run by Node.js (``mqttjs_v5.cjs``). Skipped, saying why, when Node.js or
the web client's packages are missing (``scripts/web.sh`` installs both)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conformance.conftest import PlainNode

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("mqttjs_v5.cjs")
NODE_MODULES = ROOT / "web" / "node_modules"


def run_mqttjs(node: PlainNode, prefix: str) -> dict[str, object]:
    """Run the MQTT.js client script against ``node``; its JSON report."""
    executable = shutil.which("node")
    if executable is None:
        pytest.skip("no Node.js: scripts/web.sh installs it")
    if not (NODE_MODULES / "mqtt").is_dir():
        pytest.skip(f"MQTT.js is not installed in {NODE_MODULES}: run scripts/web.sh")
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    done = subprocess.run([executable, str(SCRIPT), str(node.port), prefix], capture_output=True, text=True,
                          env=env, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_v5_mqttjs_connects_subscribes_and_gets_request_response_properties(node: PlainNode) -> None:
    report = run_mqttjs(node, "mqttjs5")
    connack = report["connack"]
    assert isinstance(connack, dict)
    assert connack["reasonCode"] == 0
    assert connack["topicAliasMaximum"] == 10
    assert connack["receiveMaximum"] == 1024
    assert report["suback"] == [1, 1]
    messages = report["messages"]
    assert isinstance(messages, list)
    assert [m["payload"] for m in messages] == ["m0", "m1", "m2"]  # in order, once
    for i, message in enumerate(messages):  # the topic arrives whole although the node used an alias
        assert message["topic"] == "mqttjs5/req"
        assert message["qos"] == 1
        assert message["userProperties"] == {"k": "v"}
        assert (message["responseTopic"], message["correlationData"]) == ("mqttjs5/resp", f"c{i}")
        assert message["contentType"] == "text/plain"
        assert message["subscriptionIdentifier"] == 7
    shared = report["shared"]
    assert isinstance(shared, list)
    assert [m["payload"] for m in shared] == ["s0"]
