"""REST API: /conversations/{user_id|group_id}/messages (history, newest first, paged)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import orjson
import pytest

from chatmq.core import ids
from chatmq.core.auth import TokenService
from chatmq.core.envelopes import message_envelope
from chatmq.core.ids import conversation_key
from chatmq.services.api import create_app
from chatmq.services.store.base import NewMessage
from tests.unit.conftest import TOKEN_KEY, ApiHarness, RecordingNotifier

V1 = "/api/v1"


async def _send(api: ApiHarness, sender: str, *, to: str | None = None, group: str | None = None,
                recipients: list[str] | None = None, n: int = 1, ts: int | None = None) -> list[str]:
    """Store ``n`` messages from ``sender`` (oldest first) as the router would, stamped ``ts`` (else now);
    returns their server ids."""
    batch: list[NewMessage] = []
    for i in range(n):
        sid, cid, ts = ids.server_id(), str(uuid.uuid4()), ids.now_ms() if ts is None else ts
        body = {"text": f"hello {i}"}
        targets = recipients if recipients is not None else [to] if to else []
        batch.append(NewMessage(
            server_id=sid, client_id=cid, sender=sender, to=to, group=group,
            conversation=conversation_key(sender, to, group), body=orjson.dumps(body), ts=ts,
            envelopes={r: message_envelope(sid, cid, sender, r, group, msgspec.Raw(orjson.dumps(body)), ts)
                       for r in targets},
        ))
    results = await api.store.accept_messages(batch)
    assert not any(r.duplicate for r in results)
    return [m.server_id for m in batch]


async def _page(api: ApiHarness, caller: str, peer: str, **params: Any) -> httpx.Response:
    url = f"{V1}/conversations/{peer}/messages"
    return await api.client.get(url, headers=api.auth(caller), params=params)


async def test_direct_history_newest_first_in_message_shape(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    [first] = await _send(api, alice, to=bob)
    [second] = await _send(api, bob, to=alice)
    r = await _page(api, alice, bob)
    assert r.status_code == 200
    body = r.json()
    assert [m["id"] for m in body["messages"]] == [second, first]
    assert body["next_before"] is None
    stored = {m.server_id: m for m in await api.store.get_messages([first, second])}
    newest = body["messages"][0]
    assert newest == {"type": "message", "id": second, "client_id": stored[second].client_id, "from": bob,
                      "to": alice, "group": None, "body": {"text": "hello 0"}, "ts": stored[second].ts,
                      "reply_to": None, "edited_at": None, "deleted": False, "reactions": {},
                      "status": None, "receipts": None}  # bob's message: status only on the caller's own
    # the same conversation seen from the other side (the status shows on each side's own messages)
    other = (await _page(api, bob, alice)).json()
    assert [m["status"] for m in other["messages"]] == ["sent", None]
    assert [m["status"] for m in body["messages"]] == [None, "sent"]
    strip = [{k: v for k, v in m.items() if k != "status"} for m in other["messages"]]
    assert strip == [{k: v for k, v in m.items() if k != "status"} for m in body["messages"]]


async def test_history_holds_only_this_conversation(api: ApiHarness) -> None:
    alice, bob, carol = await api.user("alice"), await api.user("bob"), await api.user("carol")
    mine = await _send(api, alice, to=bob)
    await _send(api, bob, to=carol, n=2)
    await _send(api, carol, to=alice)
    r = await _page(api, alice, bob)
    assert [m["id"] for m in r.json()["messages"]] == mine


async def test_empty_history(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    r = await _page(api, alice, bob)
    assert r.status_code == 200
    assert r.json() == {"messages": [], "next_before": None}


async def test_paging_with_before(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    sent = await _send(api, alice, to=bob, n=5)
    newest_first = sent[::-1]
    p1 = (await _page(api, alice, bob, limit=2)).json()
    assert [m["id"] for m in p1["messages"]] == newest_first[:2]
    assert p1["next_before"] == newest_first[1]
    p2 = (await _page(api, alice, bob, limit=2, before=p1["next_before"])).json()
    assert [m["id"] for m in p2["messages"]] == newest_first[2:4]
    assert p2["next_before"] == newest_first[3]
    p3 = (await _page(api, alice, bob, limit=2, before=p2["next_before"])).json()
    assert [m["id"] for m in p3["messages"]] == newest_first[4:]
    assert p3["next_before"] is None


async def test_paging_ending_on_a_full_page(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    sent = await _send(api, alice, to=bob, n=4)
    p1 = (await _page(api, alice, bob, limit=2)).json()
    p2 = (await _page(api, alice, bob, limit=2, before=p1["next_before"])).json()
    assert [m["id"] for m in p2["messages"]] == [sent[1], sent[0]]
    assert p2["next_before"] == sent[0]
    p3 = (await _page(api, alice, bob, limit=2, before=p2["next_before"])).json()
    assert p3 == {"messages": [], "next_before": None}


async def test_default_limit_is_50(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    sent = await _send(api, alice, to=bob, n=55)
    body = (await _page(api, alice, bob)).json()
    assert len(body["messages"]) == 50
    assert body["next_before"] == sent[5]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "many"}, {"before": "bad id!"}])
async def test_bad_paging_parameters_are_422(api: ApiHarness, params: dict[str, Any]) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    r = await _page(api, alice, bob, **params)
    assert r.status_code == 422


async def test_limit_100_is_allowed_by_default(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    assert (await _page(api, alice, bob, limit=100)).status_code == 200


@pytest.fixture
async def small_page_api(api: ApiHarness) -> AsyncIterator[ApiHarness]:
    """The same store behind an app whose ``max_page`` is 10."""
    tokens = TokenService(TOKEN_KEY, 900, 3600)
    app = create_app(api.store, tokens, RecordingNotifier(), max_page=10)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield ApiHarness(client, api.store, tokens, RecordingNotifier(), api.control)


async def test_max_page_bounds_the_limit_and_the_default(small_page_api: ApiHarness) -> None:
    api = small_page_api
    alice, bob = await api.user("alice"), await api.user("bob")
    await _send(api, alice, to=bob, n=12)
    assert (await _page(api, alice, bob, limit=11)).status_code == 422
    assert len((await _page(api, alice, bob, limit=10)).json()["messages"]) == 10
    assert len((await _page(api, alice, bob)).json()["messages"]) == 10


def test_max_page_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_page"):
        create_app(None, TokenService(TOKEN_KEY, 900, 3600), RecordingNotifier(), max_page=0)  # type: ignore[arg-type]


async def test_unknown_user_is_404(api: ApiHarness) -> None:
    alice = await api.user("alice")
    r = await _page(api, alice, "u00000000000000ff")
    assert r.status_code == 404
    assert r.json()["detail"]


async def test_group_history_for_members(api: ApiHarness) -> None:
    alice, bob, carol = await api.user("alice"), await api.user("bob"), await api.user("carol")
    group = await api.store.create_group(ids.group_id(), "g", alice, [bob, carol])
    gid = group.group_id
    first = await _send(api, alice, group=gid, recipients=[bob, carol])
    second = await _send(api, bob, group=gid, recipients=[alice, carol])
    await _send(api, alice, to=bob)  # a direct message is not group history
    for who in (alice, bob, carol):
        r = await _page(api, who, gid)
        assert r.status_code == 200
        messages = r.json()["messages"]
        assert [m["id"] for m in messages] == second + first
        assert all(m["group"] == gid for m in messages)
        assert messages[0]["from"] == bob


async def test_group_history_refused_to_outsiders_and_unknown_groups(api: ApiHarness) -> None:
    alice, bob, dave = await api.user("alice"), await api.user("bob"), await api.user("dave")
    gid = (await api.store.create_group(ids.group_id(), "g", alice, [bob])).group_id
    await _send(api, alice, group=gid, recipients=[bob])
    r = await _page(api, dave, gid)
    assert r.status_code == 403
    assert "messages" not in r.json()
    r = await _page(api, alice, "g00000000000000ff")
    assert r.status_code == 404


async def test_a_former_member_loses_access(api: ApiHarness) -> None:
    alice, bob = await api.user("alice"), await api.user("bob")
    gid = (await api.store.create_group(ids.group_id(), "g", alice, [bob])).group_id
    await api.store.remove_member(gid, bob)
    assert (await _page(api, bob, gid)).status_code == 403
