from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess, Users, serve, user_factory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serve(tmp_path_factory.mktemp("chatmq"))


@pytest.fixture
def users(server: ServerProcess) -> Iterator[Users]:
    yield from user_factory(server)


@pytest.fixture(params=["tcp", "websockets"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Path:
    return tmp_path
