"""The ``Store``'s conversation role (``ConversationStore``): heads kept by ``accept_messages``, read
markers, mutes and unread messages, on every store in ``tests.unit.test_store.STORE_FACTORIES``."""

from __future__ import annotations

from chatmq.core import ids
from chatmq.services.store.base import ConversationState, Store
from tests.unit.test_store import make_store, new_message, store

__all__ = ["make_store", "store"]  # the fixtures, used by name below


async def test_heads_follow_the_newest_message_of_each_conversation(store: Store) -> None:
    a, b, c = "ua", "ub", "uc"
    gid = ids.group_id()
    first = new_message(a, to=b)
    group_msg = new_message(c, group=gid, recipients=[a, b])
    newest = new_message(b, to=a, body={"text": "latest"})
    await store.accept_messages([first, group_msg])
    await store.accept_messages([newest, new_message(c, to=b)])
    again = new_message(a, to=b, client_id=first.client_id)  # a resend: no new head
    await store.accept_messages([again])

    heads = await store.conversation_heads(a, [gid], None, 10)
    assert [(h.conversation, h.last_id) for h in heads] == [
        (ids.conversation_key(a, b), newest.server_id), (gid, group_msg.server_id)]
    assert (heads[0].a, heads[0].b, heads[0].group) == (*sorted((a, b)), None)
    assert (heads[0].last_sender, heads[0].last_body, heads[0].last_ts) == (b, {"text": "latest"}, newest.ts)
    assert (heads[1].a, heads[1].group) == (None, gid)
    assert [h.conversation for h in await store.conversation_heads(a, [], None, 10)] == [ids.conversation_key(a, b)]
    assert [h.conversation for h in await store.conversation_heads(a, [gid], newest.server_id, 10)] == [gid]
    assert [h.conversation for h in await store.conversation_heads(b, [], None, 1)] == [ids.conversation_key(b, c)]


async def test_read_markers_only_move_forward_and_unread_counts_others_messages(store: Store) -> None:
    a, b = "ua", "ub"
    conv = ids.conversation_key(a, b)
    msgs = [new_message(b, to=a) for _ in range(3)]
    mine = new_message(a, to=b)
    await store.accept_messages([*msgs, mine])
    assert await store.unread(conv, a, None, None, 10) == [(m.server_id, b) for m in msgs]
    assert await store.unread(conv, a, msgs[0].server_id, msgs[1].server_id, 10) == [(msgs[1].server_id, b)]
    assert await store.unread(conv, a, None, None, 2) == [(m.server_id, b) for m in msgs[:2]]
    assert await store.mark_read(a, conv, msgs[1].server_id) is None
    assert await store.mark_read(a, conv, msgs[0].server_id) == msgs[1].server_id  # never back
    assert await store.conversation_states(a, [conv, "other"]) == {conv: ConversationState(msgs[1].server_id)}
    assert await store.readers(conv) == {a: msgs[1].server_id}
    await store.set_muted(a, conv, True)
    await store.set_muted(b, conv, True)
    assert await store.conversation_states(a, [conv]) == {conv: ConversationState(msgs[1].server_id, True)}
    assert await store.readers(conv) == {a: msgs[1].server_id}  # b muted but read nothing
    await store.set_muted(a, conv, False)
    assert (await store.conversation_states(a, [conv]))[conv].muted is False
