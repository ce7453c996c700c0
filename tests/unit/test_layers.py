"""The layer contracts (``.importlinter``): every package has a layer, and an upward import fails."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _layer_modules() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    lines = config["importlinter:contract:layers"]["layers"].split("\n")
    return [m.strip() for line in lines for m in line.replace("|", ":").split(":") if m.strip()]


def test_every_package_is_in_a_layer() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    layers = _layer_modules()
    # chatmq itself and chatmq.config (data only) hold no code of a layer
    unplaced = [p for p in packages if p not in ("chatmq", "chatmq.config", "chatmq.services")
                and not any(p == m or p.startswith(m + ".") for m in layers)]
    assert unplaced == []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain install of the tree, as scripts/layers.sh makes it."""
    target = tmp_path_factory.mktemp("layers") / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True)
    return target


def _lint(site: Path) -> subprocess.CompletedProcess[str]:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None
    return subprocess.run([lint, "--no-cache", str(ROOT / ".importlinter")], cwd=site.parent, text=True,
                          capture_output=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})


def test_the_tree_keeps_its_layers(site: Path) -> None:
    result = _lint(site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout
    assert " 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "upward"), [
    ("chatmq/core/ids.py", "chatmq.run.cli"),            # foundation → run
    ("broker/wire.py", "chatmq.services.store.base"),     # broker → its sibling, the store
    ("bridges/gateway.py", "chatmq.services.chat.router"),  # bridge → services
])
def test_an_upward_import_fails(site: Path, module: str, upward: str, tmp_path: Path) -> None:
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    installed = {"chatmq/": "chatmq/", "broker/": "chatmq/broker/", "bridges/": "chatmq/bridges/"}
    prefix = next(p for p in installed if module.startswith(p))
    path = copy / (installed[prefix] + module[len(prefix):])
    path.write_text(path.read_text() + f"\nimport {upward}  # noqa\n")
    result = _lint(copy)
    assert result.returncode != 0
    assert upward in result.stdout
