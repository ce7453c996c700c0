"""Cluster tests: every part its own process on the real Kafka and MongoDB, nginx in front."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import ClusterDeployment, Users, cluster, user_factory

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterDeployment]:
    """Two broker nodes and two router copies."""
    yield from cluster(tmp_path_factory.mktemp("cluster"), nodes=2, routers=2)


@pytest.fixture
def users(deployment: ClusterDeployment) -> Iterator[Users]:
    """Users connecting through nginx."""
    yield from user_factory(deployment)
