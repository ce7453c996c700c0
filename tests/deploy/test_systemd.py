"""The systemd units of a bare-metal node (deploy/systemd): one template per cluster part, each
running that part's real command, hardened, and accepted by ``systemd-analyze verify``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main

from chatmq.run.cli import app
from tests.deploy.conftest import DEPLOY

pytestmark = pytest.mark.deploy

UNITS = DEPLOY / "systemd"
CLUSTER_PARTS = ["broker", "router", "group-router", "storage", "api", "push", "telemetry"]
INSTALLED_CHATMQ = "/opt/chatmq/venv/bin/chatmq"


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` of a unit file, in order (keys may repeat, as systemd allows)."""
    entries, section = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key, value))
    return entries


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for s, k, v in unit_entries(path) if (s, k) == (section, key)]


def verify(units: list[Path], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of copies of ``units`` whose ExecStart points at a stub ``chatmq``
    (verify insists the command exists; on this machine chatmq is not at /opt/chatmq)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing (Debian package systemd)")
        pytest.skip("systemd-analyze is missing (Debian package systemd)")
    stub = tmp_path / "chatmq"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    copies = []
    for unit in units:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED_CHATMQ, str(stub)))
        copies.append(str(copy))
    return subprocess.run([analyze, "verify", "--man=no", *copies], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)


def test_every_cluster_part_has_a_template_unit_running_its_command() -> None:
    commands = typer.main.get_group(app).commands
    for part in CLUSTER_PARTS:
        unit = UNITS / f"chatmq-{part}@.service"
        [exec_start] = values(unit, "Service", "ExecStart")
        argv = exec_start.split()
        assert argv[:2] == [INSTALLED_CHATMQ, part], unit.name
        assert part in commands
        assert values(unit, "Install", "WantedBy") == ["chatmq.target"]
        assert values(unit, "Unit", "PartOf") == ["chatmq.target"]
    assert values(UNITS / "chatmq-broker@.service", "Service", "ExecStart")[0].endswith("--node %i")
    [serve] = values(UNITS / "chatmq.service", "Service", "ExecStart")
    assert serve.split()[1] == "serve"


def test_units_run_unprivileged_drain_on_sigterm_and_keep_secrets_out() -> None:
    for unit in sorted(UNITS.glob("*.service")):
        assert values(unit, "Service", "User") == ["chatmq"], unit.name
        assert values(unit, "Service", "KillSignal") == ["SIGTERM"], unit.name
        assert int(values(unit, "Service", "TimeoutStopSec")[0]) >= 30, unit.name
        assert values(unit, "Service", "ProtectSystem") == ["strict"], unit.name
        assert values(unit, "Service", "NoNewPrivileges") == ["yes"], unit.name
        assert values(unit, "Service", "StateDirectory") == ["chatmq"], unit.name
        text = unit.read_text()
        for secret in ("CHATMQ_JWT_SECRET=", "CHATMQ_MONGO_URL=", "CHATMQ_INFLUX_TOKEN="):
            assert secret not in text, unit.name  # secrets come from the EnvironmentFile only
        assert any(v.endswith("/etc/chatmq/chatmq.env") for v in values(unit, "Service", "EnvironmentFile"))
    sysusers = (UNITS / "chatmq.sysusers").read_text()
    assert "u chatmq " in sysusers


def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    units = sorted([*UNITS.glob("*.service"), *UNITS.glob("*.target")])
    assert len(units) == len(CLUSTER_PARTS) + 2
    done = verify(units, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""  # no warning either (an unknown key is only a warning)


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: an unknown key and a missing command are reported."""
    broken = tmp_path / "src" / "chatmq-broken@.service"
    broken.parent.mkdir()
    text = (UNITS / "chatmq-router@.service").read_text()
    broken.write_text(text.replace("ExecStart=" + INSTALLED_CHATMQ, "ExecStart=/nonexistent/chatmq")
                      .replace("KillSignal=", "KillSignall="))
    done = verify([broken], tmp_path)
    assert done.returncode != 0
    assert "Unknown key 'KillSignall'" in done.stderr
    assert "/nonexistent/chatmq is not executable" in done.stderr
