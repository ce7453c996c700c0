"""Shared helpers of the deployment tests: the repository's paths, and the Helm chart rendered.

``helm`` is the binary ``scripts/helm.sh install`` builds (``build/tools/bin/helm``, or
``$CHATMQ_HELM``). Without it the chart tests skip, except under CI, where scripts/test.sh
installs it first and a missing helm is a failure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "chatmq"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
KUBE_VERSION = "1.30.0"

Manifest = dict[str, Any]


def _helm_path() -> Path:
    return Path(os.environ.get("CHATMQ_HELM", REPO / "build" / "tools" / "bin" / "helm"))


@pytest.fixture(scope="session")
def helm() -> Path:
    path = _helm_path()
    if not path.is_file():
        message = f"no helm at {path}: run scripts/helm.sh install"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def helm_run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60, check=False)


def render(helm: Path, *args: str) -> list[Manifest]:
    """``helm template`` of the chart with ``args`` (values files, --set): the manifests, parsed."""
    done = helm_run(helm, "template", "chatmq", str(CHART), "--kube-version", KUBE_VERSION, *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render_error(helm: Path, *args: str) -> str:
    """``helm template`` that must fail: its error output."""
    done = helm_run(helm, "template", "chatmq", str(CHART), "--kube-version", KUBE_VERSION, *args)
    assert done.returncode != 0, "the chart rendered, but should have refused these values"
    return done.stderr


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``image``-marked tests need the image built (scripts/image.sh, minutes): they run only when
    asked for by marker (``pytest -m image``), never in the default run."""
    if "image" in (config.option.markexpr or ""):
        return
    keep = [item for item in items if item.get_closest_marker("image") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
