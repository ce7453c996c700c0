"""The OCI image (scripts/image.sh -> build/image/oci), unpacked with ``umoci unpack`` and run
without a chroot: its Python, loaded through the image's own dynamic loader and libraries, runs the
image's entrypoint (``chatmq serve``), which serves the contract's chat round trip, the built-in
web client, and drains on SIGTERM.

podman cannot start containers on this machine (README "Deploying", deploy/README.md "The image"),
so the image is checked this way. Marker ``image``: deselected unless ``-m image`` is given
(``scripts/image.sh && .venv/bin/python -m pytest -m image tests/deploy``); building the image takes
minutes, more than CI's budget allows for every run.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.conftest import REPO
from tests.deploy.serve import Serve, drain_round_trip

pytestmark = pytest.mark.image

OCI = REPO / "build" / "image" / "oci"
SITE = "opt/chatmq/venv/lib/python3.11/site-packages"


def _tag() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in pyproject.toml")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image unpacked: ``<bundle>/config.json`` (the runtime config) and ``<bundle>/rootfs``."""
    if not (OCI / "index.json").is_file():
        pytest.fail(f"no image at {OCI}: run scripts/image.sh first")
    umoci = shutil.which("umoci")
    assert umoci is not None, "umoci is missing (scripts/image.sh installs it)"
    target = tmp_path_factory.mktemp("image") / "bundle"
    done = subprocess.run([umoci, "unpack", "--image", f"{OCI}:{_tag()}", str(target)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture(scope="module")
def runtime(bundle: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((bundle / "config.json").read_text())
    return config


def test_the_entrypoint_runs_chatmq_as_a_non_root_user(runtime: dict[str, Any]) -> None:
    process = runtime["process"]
    assert process["user"]["uid"] == 10001
    assert process["user"]["gid"] == 10001
    assert process["args"] == ["/opt/chatmq/venv/bin/chatmq", "serve"]
    assert process["cwd"] == "/var/lib/chatmq"
    env = dict(item.split("=", 1) for item in process["env"])
    assert env["CHATMQ_DATA_DIR"] == "/var/lib/chatmq"
    assert env["CHATMQ_HOST"] == "0.0.0.0"
    assert env["PATH"].startswith("/opt/chatmq/venv/bin:")


def test_the_image_declares_healthcheck_stop_signal_and_volume() -> None:
    buildah = shutil.which("buildah")
    assert buildah is not None, "buildah is missing (scripts/image.sh installs it)"
    done = subprocess.run([buildah, "inspect", "--type", "image", f"localhost/chatmq:{_tag()}"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    docker = json.loads(done.stdout)["Docker"]["config"]
    assert docker["Healthcheck"]["Test"] == ["CMD", "/opt/chatmq/venv/bin/python", "/opt/chatmq/healthcheck.py"]
    assert docker["StopSignal"] == "SIGTERM"
    assert "/var/lib/chatmq" in docker["Volumes"]
    assert {"1883/tcp", "8083/tcp", "8000/tcp", "9100/tcp"} <= set(docker["ExposedPorts"])


def test_the_filesystem_is_read_only_friendly(bundle: Path) -> None:
    root = bundle / "rootfs"
    assert "chatmq:x:10001:10001:" in (root / "etc" / "passwd").read_text()
    data = (root / "var" / "lib" / "chatmq").stat()
    assert (data.st_uid, data.st_gid) == (10001, 10001)
    assert (root / "etc" / "chatmq" / "cluster.toml").read_text() == (REPO / "config" / "cluster.toml").read_text()
    assert (root / SITE / "chatmq" / "web" / "dist" / "index.html").is_file()  # the web client is built in
    # the code and config belong to root and nobody else may write them: the user writes only its volume
    for top in ("opt/chatmq", "etc/chatmq"):
        for path in (root / top).rglob("*"):
            info = path.lstat()
            assert info.st_uid == 0, path
            assert not info.st_mode & stat.S_IWOTH or stat.S_ISLNK(info.st_mode), path
    assert not list((root / "tmp").iterdir())  # the build left nothing behind


def image_python(bundle: Path) -> tuple[list[str], dict[str, str]]:
    """The image's own Python 3.11, run through the image's loader and libraries (no chroot), with
    the venv's packages: the command line and environment for running its console scripts."""
    root = bundle / "rootfs"
    libs = f"{root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu"
    command = [str(root / "lib64" / "ld-linux-x86-64.so.2"), "--library-path", libs, str(root / "usr/bin/python3.11")]
    env = {"PATH": "/usr/bin:/bin", "PYTHONHOME": str(root / "usr"), "PYTHONPATH": str(root / SITE),
           "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
           "CHATMQ_CONFIG": str(root / "etc/chatmq/chatmq.toml"), "HOME": "/nonexistent"}
    return command, env


def test_the_image_python_is_its_own(bundle: Path) -> None:
    command, env = image_python(bundle)
    done = subprocess.run([*command, "-c", "import sys, chatmq, aiokafka, pymongo, firebase_admin; "
                           "print(sys.prefix); print(chatmq.__file__)"],
                          capture_output=True, text=True, timeout=60, check=False, env=env, cwd=bundle)
    assert done.returncode == 0, done.stderr
    prefix, package = done.stdout.split()
    assert prefix == str(bundle / "rootfs" / "usr")
    assert package == str(bundle / "rootfs" / SITE / "chatmq" / "__init__.py")


def test_the_entrypoint_serves_the_chat_round_trip_and_drains(bundle: Path, tmp_path: Path) -> None:
    command, env = image_python(bundle)
    entrypoint = bundle / "rootfs" / "opt" / "chatmq" / "venv" / "bin" / "chatmq"
    server = Serve([*command, str(entrypoint)], tmp_path / "data", tmp_path / "serve.log", env=env)
    drain_round_trip(server)
    server.start()
    try:
        page = httpx.get(f"{server.api_url}/", timeout=5)
        assert page.status_code == 200
        assert "<html" in page.text.lower()
    finally:
        assert server.stop() == 0


def test_the_healthcheck_script_says_whether_healthz_answers(bundle: Path, tmp_path: Path) -> None:
    command, env = image_python(bundle)
    check = str(bundle / "rootfs" / "opt" / "chatmq" / "healthcheck.py")
    server = Serve([*command, str(bundle / "rootfs" / "opt/chatmq/venv/bin/chatmq")], tmp_path / "data",
                   tmp_path / "serve.log", env=env)
    probe_env = {**env, "CHATMQ_HTTP_PORT": str(server.http_port), "CHATMQ_OPS_PORT": str(server.ws_port)}
    assert subprocess.run([*command, check], env=probe_env, timeout=30, check=False).returncode == 1
    server.start()
    try:
        assert subprocess.run([*command, check], env=probe_env, timeout=30, check=False).returncode == 0
    finally:
        assert server.stop() == 0
    assert os.path.getsize(server.log_path) > 0
