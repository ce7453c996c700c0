"""The operator's process list on a cluster: a killed part is reported missing, and ready again once
restarted (heartbeats every second here, so missing after three)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import ClusterDeployment, cluster
from tests.e2e.test_admin import admin_headers, poll

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterDeployment]:
    """One broker node and two router copies, heartbeats every second."""
    yield from cluster(tmp_path_factory.mktemp("cluster"), nodes=1, routers=2, env={"CHATMQ_HEARTBEAT_INTERVAL": "1"})



def test_a_killed_part_is_missing_until_it_is_restarted(deployment: ClusterDeployment) -> None:
    headers = admin_headers(deployment)
    parts = set(deployment.ops_urls())

    def statuses() -> dict[str, str]:
        answer = httpx.get(f"{deployment.api_url}/api/v1/admin/processes", headers=headers)
        assert answer.status_code == 200, answer.text
        return {p["instance"]: p["status"] for p in answer.json()}

    poll(lambda: statuses() == dict.fromkeys(parts, "ready"), 30)

    deployment.cluster.kill("router-2")
    poll(lambda: statuses()["router-2"] == "missing", 30)
    assert statuses() == {**dict.fromkeys(parts, "ready"), "router-2": "missing"}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{deployment.ops_urls()['router-2']}/healthz")

    deployment.cluster.restart("router-2")
    poll(lambda: statuses() == dict.fromkeys(parts, "ready"), 30)
    assert httpx.get(f"{deployment.ops_urls()['router-2']}/readyz").json()["ready"] is True
