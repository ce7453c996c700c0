"""SIGTERM drains ``chatmq serve`` (what a container runtime, Kubernetes or systemd sends first):
connected MQTT 5 clients get a server DISCONNECT, the process exits 0, acknowledged messages stay
pending and are delivered after the restart."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.deploy.serve import Serve, drain_round_trip

pytestmark = pytest.mark.deploy


def test_sigterm_drains_and_keeps_acknowledged_messages(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMQ_")}
    server = Serve([sys.executable, "-m", "chatmq.run.cli"], tmp_path / "data", tmp_path / "serve.log",
                   env={**env, "PYTHONUNBUFFERED": "1"})
    drain_round_trip(server)
