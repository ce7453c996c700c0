"""``GET /search``: the caller's own conversations only, every word, optionally one conversation."""

from __future__ import annotations

from tests.unit.conftest import ApiHarness
from tests.unit.test_api_conversations import _send

V1 = "/api/v1"


async def test_search_covers_the_callers_conversations_only(api: ApiHarness) -> None:
    alice, bob, carol = await api.user("alice"), await api.user("bob"), await api.user("carol")
    gid = (await api.client.post(f"{V1}/groups", headers=api.auth(carol), json={"name": "g", "members": [bob]})
           ).json()["group_id"]
    [with_bob] = await _send(api, alice, to=bob)  # "hello 0"
    await _send(api, bob, to=carol)
    await _send(api, carol, group=gid, recipients=[bob])

    r = await api.client.get(f"{V1}/search", headers=api.auth(alice), params={"q": "Hello!"})
    assert r.status_code == 200
    assert [(m["id"], m["body"]) for m in r.json()["messages"]] == [(with_bob, {"text": "hello 0"})]
    by_bob = await api.client.get(f"{V1}/search", headers=api.auth(bob), params={"q": "hello"})
    assert len(by_bob.json()["messages"]) == 3
    only = await api.client.get(f"{V1}/search", headers=api.auth(bob), params={"q": "hello", "conversation": gid})
    assert [m["group"] for m in only.json()["messages"]] == [gid]
    outsider = await api.client.get(f"{V1}/search", headers=api.auth(alice), params={"q": "x", "conversation": gid})
    assert outsider.status_code == 403
    nothing = await api.client.get(f"{V1}/search", headers=api.auth(alice), params={"q": "?!"})
    assert nothing.status_code == 422
    assert (await api.client.get(f"{V1}/search", params={"q": "hello"})).status_code == 401
