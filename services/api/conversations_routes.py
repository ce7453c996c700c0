"""``/conversations``: the caller's conversation list (newest activity first, with unread counts), marking
one read (a ``read`` receipt to the senders), muting, and a conversation's history, newest first, with the
status of the caller's own messages."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from chatmq.core.envelopes import ID_PATTERN, message_id
from chatmq.core.ids import conversation_key
from chatmq.services.api.deps import ApiContext, Ctx, CurrentUser
from chatmq.services.api.errors import forbidden, not_found
from chatmq.services.api.models import (
    ConversationOut,
    ConversationPage,
    GroupRef,
    HistoryMessage,
    HistoryPage,
    LastMessage,
    MessageStatus,
    ReadRequest,
    ReceiptCounts,
)
from chatmq.services.store.base import ConversationHead, Group, StoredMessage

DEFAULT_LIMIT = 50
#: unread messages are counted up to this many per conversation
UNREAD_CAP = 1000

_UNKNOWN: dict[int | str, dict[str, Any]] = {403: {"description": "Not a member of the group."},
                                             404: {"description": "No such user or group."}}


async def conversation_of(ctx: ApiContext, user_id: str, peer: str) -> tuple[str, Group | None]:
    """The conversation key of the caller with ``peer`` (a user id, or a group id starting with ``g``), and
    the group; 404 unknown, 403 not a member."""
    if peer.startswith("g"):
        group = await ctx.store.get_group(peer)
        if group is None:
            raise not_found("no such group")
        if not group.is_member(user_id):
            raise forbidden("not a member of this group")
        return conversation_key(user_id, group=peer), group
    if peer != user_id and not await ctx.store.existing_user_ids([peer]):
        raise not_found("no such user")
    return conversation_key(user_id, peer), None


async def _statuses(ctx: ApiContext, user_id: str, conversation: str, group: Group | None,
                    rows: list[StoredMessage]) -> dict[str, tuple[MessageStatus, ReceiptCounts | None]]:
    """The status of the caller's own messages among ``rows``: delivered once no recipient holds it pending,
    read once every recipient's read marker reached it (group messages: counts)."""
    own = [m for m in rows if m.sender == user_id]
    if not own:
        return {}
    held = {(u, message_id(env)) for u, env in await ctx.store.pending_copies([m.server_id for m in own])}
    readers = await ctx.store.readers(conversation)
    out: dict[str, tuple[MessageStatus, ReceiptCounts | None]] = {}
    for m in own:
        if group is None:
            recipients = [m.to] if m.to is not None and m.to != user_id else []
        else:
            recipients = [x.user_id for x in group.members if x.user_id != user_id and x.joined_at <= m.ts]
        read = sum(1 for r in recipients if readers.get(r, "") >= m.server_id)
        delivered = sum(1 for r in recipients if (r, m.server_id) not in held or readers.get(r, "") >= m.server_id)
        status: MessageStatus = ("read" if read == len(recipients) else
                                 "delivered" if delivered == len(recipients) else "sent")
        out[m.server_id] = (status, None if group is None else ReceiptCounts(recipients=len(recipients),
                                                                              delivered=delivered, read=read))
    return out


def conversations_router(max_page: int) -> APIRouter:
    """The conversation routes, with ``limit`` bounded by ``max_page``."""
    router = APIRouter(prefix="/conversations", tags=["conversations"])
    default_limit = min(DEFAULT_LIMIT, max_page)

    @router.get("", response_model=ConversationPage)
    async def conversations(
        user: CurrentUser,
        ctx: Ctx,
        before: Annotated[str | None, Query(pattern=ID_PATTERN, description="`next_before` of the page before")
                          ] = None,
        limit: Annotated[int, Query(ge=1, le=max_page)] = default_limit,
    ) -> ConversationPage:
        """The caller's conversations (1:1 and the groups it is in) that have messages, newest latest
        message first; with the unread count (others' messages after the caller's read marker) and
        whether the caller muted it."""
        groups = {g.group_id: g for g in await ctx.store.groups_of(user.user_id)}
        heads = await ctx.store.conversation_heads(user.user_id, list(groups), before, limit)
        states = await ctx.store.conversation_states(user.user_id, [h.conversation for h in heads])
        # the latest messages as they are now: an edit's body, a delete's tombstone
        latest = {m.server_id: m for m in await ctx.store.get_messages([h.last_id for h in heads])}
        items: list[ConversationOut] = []
        for head in heads:
            state = states.get(head.conversation)
            unread = await ctx.store.unread(head.conversation, user.user_id, state.read_up_to if state else None,
                                            None, UNREAD_CAP)
            items.append(_item(user.user_id, head, latest.get(head.last_id), groups, len(unread),
                               bool(state and state.muted)))
        return ConversationPage(conversations=items, next_before=heads[-1].last_id if len(heads) == limit else None)

    @router.post("/{peer}/read", status_code=204, response_class=Response, responses=_UNKNOWN)
    async def mark_read(peer: str, body: ReadRequest, user: CurrentUser, ctx: Ctx) -> Response:
        """Mark the conversation read up to server id ``up_to`` (a marker never goes back). The messages of
        others this newly covers (up to 1000) get a ``read`` receipt to their senders, as if the caller's
        client had sent one."""
        conversation, _ = await conversation_of(ctx, user.user_id, peer)
        before = await ctx.store.mark_read(user.user_id, conversation, body.up_to)
        if before is not None and before >= body.up_to:
            return Response(status_code=204)
        newly = await ctx.store.unread(conversation, user.user_id, before, body.up_to, UNREAD_CAP)
        if newly and ctx.feed is not None:
            await ctx.feed.read(user.user_id, [sid for sid, _ in newly])
        return Response(status_code=204)

    @router.put("/{peer}/mute", status_code=204, response_class=Response, responses=_UNKNOWN)
    async def mute(peer: str, user: CurrentUser, ctx: Ctx) -> Response:
        """Mute the conversation (shown as ``muted`` in the list; clients decide what it means)."""
        conversation, _ = await conversation_of(ctx, user.user_id, peer)
        await ctx.store.set_muted(user.user_id, conversation, True)
        return Response(status_code=204)

    @router.delete("/{peer}/mute", status_code=204, response_class=Response, responses=_UNKNOWN)
    async def unmute(peer: str, user: CurrentUser, ctx: Ctx) -> Response:
        """Unmute the conversation."""
        conversation, _ = await conversation_of(ctx, user.user_id, peer)
        await ctx.store.set_muted(user.user_id, conversation, False)
        return Response(status_code=204)

    @router.get("/{peer}/messages", response_model=HistoryPage, responses=_UNKNOWN)
    async def history(
        peer: str,
        user: CurrentUser,
        ctx: Ctx,
        before: Annotated[str | None, Query(pattern=ID_PATTERN, description="A server message id")] = None,
        limit: Annotated[int, Query(ge=1, le=max_page)] = default_limit,
    ) -> HistoryPage:
        """Messages with ``peer`` (a user id) or in ``peer`` (a group id, starting with ``g``).

        Newest first, older than ``before`` when given; ``next_before`` is the id to pass
        as ``before`` for the next page, or null when this page is the last. Each message carries
        ``edited_at``, ``deleted`` and ``reactions``; those the caller deleted for itself are left out. The
        caller's own messages carry ``status`` (and, in groups, ``receipts`` counts).
        """
        conversation, group = await conversation_of(ctx, user.user_id, peer)
        rows = await ctx.store.history(conversation, before, limit, viewer=user.user_id)
        statuses = await _statuses(ctx, user.user_id, conversation, group, rows)
        messages = [HistoryMessage.of(m, *statuses.get(m.server_id, (None, None))) for m in rows]
        next_before = messages[-1].id if len(messages) == limit else None
        return HistoryPage(messages=messages, next_before=next_before)

    return router


def _item(user_id: str, head: ConversationHead, now: StoredMessage | None, groups: dict[str, Group], unread: int,
          muted: bool) -> ConversationOut:
    """The list item of ``head``, its latest message as ``now`` is (None: as the head was stored)."""
    last = LastMessage.model_validate({
        "id": head.last_id, "from": head.last_sender, "ts": head.last_ts,
        "body": head.last_body if now is None else now.body,
        "edited_at": None if now is None else now.edited_at, "deleted": now is not None and now.deleted})
    if head.group is not None:
        group = groups[head.group]
        return ConversationOut(id=head.group, kind="group", peer=None, group=GroupRef(group_id=group.group_id,
                               name=group.name), last_message=last, unread=unread, muted=muted)
    peer = head.b if head.a == user_id else head.a
    return ConversationOut(id=peer or user_id, kind="direct", peer=peer, group=None, last_message=last,
                           unread=unread, muted=muted)
