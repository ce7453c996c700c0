from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Deployment, Users, cluster, serve, user_factory


@pytest.fixture(scope="module", params=["embedded", pytest.param("cluster", marks=pytest.mark.cluster)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The system under test: ``chatmq serve``, or a cluster on Kafka and MongoDB behind nginx."""
    if request.param == "embedded":
        yield from serve(tmp_path_factory.mktemp("chatmq"))
    else:
        yield from cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def users(server: Deployment) -> Iterator[Users]:
    yield from user_factory(server)


@pytest.fixture(params=["tcp", "websockets"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Path:
    return tmp_path
