"""Message actions: ``edit``, ``delete`` and ``reaction`` envelopes, and the ``reply_to`` of messages.

An action names its ``target`` by server id; the gateway puts it on ``chat.outbox`` keyed by its
sender (it cannot know the conversation), so actions keep their order per sender, with the sender's
receipts. Here the targets of a batch are read from history by primary key (``Store.get_messages``:
only for actions and replies, never for plain messages), each action is checked, then the batch is
stored (``Store.apply_actions``: deduped by sender and client id like messages), acked, and delivered
like a message: live to the other participants who are online, kept pending (replayed on connect)
until their ``delivered`` receipt. A ``delete`` ``for: "me"`` is only stored (and acked).

Who may do what (a refusal is an ``error`` with the action's client id):

* the target must exist in a conversation the sender is in (a 1:1 message from or to them, a message
  of a group they are a member of), else ``not_found`` (the same answer as an unknown id: nothing is
  told about other conversations);
* ``edit``: the sender's own message (``forbidden``), not deleted (``not_found``), at most
  ``edit_window`` seconds old (``edit_window_passed``);
* ``delete`` for everyone: the sender's own message (``forbidden``); for me: any message they see;
* ``reaction``: a message not deleted (``not_found``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from chatmq.core.envelopes import (
    ActionIn,
    DeleteIn,
    EditIn,
    ErrorCode,
    MessageIn,
    ack_envelope,
    action_envelope,
    address,
)
from chatmq.core.ids import now_ms, server_id
from chatmq.core.records import Outbox
from chatmq.services.chat.acceptance import Acceptor
from chatmq.services.chat.outlet import Outlet
from chatmq.services.store import Group, Store
from chatmq.services.store.base import ActionKind, NewAction, StoredMessage


@dataclass(frozen=True, slots=True)
class ActionSubmission:
    """An outbox action from ``sender`` connected to ``node``."""

    sender: str
    node: str
    env: ActionIn
    device: str = ""  # the sender's MQTT client id: its ack or error goes to that connection
    echo: bool = False  # the sender has other devices: they get a copy (pending for the sender)


class Refusal(Exception):
    """An action (or a reply) the sender may not make: the contract's ``code`` and a reason."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code: ErrorCode = code
        self.reason = reason


async def reply_conversations(store: Store, items: list[Outbox]) -> dict[str, str]:
    """``{server id: conversation}`` of the messages the batch's messages answer (``reply_to``): a read by
    primary key, made only when some message of the batch carries one."""
    reply_to = {i.env.reply_to for i in items if isinstance(i.env, MessageIn) and i.env.reply_to is not None}
    if not reply_to:
        return {}
    return {m.server_id: m.conversation for m in await store.get_messages(sorted(reply_to))}


def reply_refusal(reply_to: str) -> tuple[ErrorCode, str]:
    """The ``error`` for a ``reply_to`` that names no message of the message's conversation."""
    return "not_found", f"reply_to {reply_to!r} names no message of this conversation"


class ActionHandler:
    """Checks, stores, acks and delivers a batch of message actions (the router's, in order)."""

    def __init__(self, store: Store, outlet: Outlet, acceptor: Acceptor, edit_window: int) -> None:
        """``edit_window``: seconds after sending during which a message may be edited."""
        self._store = store
        self._outlet = outlet
        self._acceptor = acceptor
        self._edit_window_ms = edit_window * 1000

    async def handle(self, subs: list[ActionSubmission]) -> None:
        if not subs:
            return
        targets = {m.server_id: m for m in await self._store.get_messages(sorted({s.env.target for s in subs}))}
        groups: dict[str, Group | None] = {}
        for gid in sorted({m.group for m in targets.values() if m.group is not None}):
            groups[gid] = await self._store.get_group(gid)
        now = now_ms()
        accepted: list[tuple[ActionSubmission, NewAction, bytes | None, list[str]]] = []
        for sub in subs:
            try:
                recipients = self._check(sub, targets.get(sub.env.target), groups, now)
            except Refusal as r:
                await self._acceptor.refuse(sub.sender, sub.node, r.code, r.reason, sub.env.id, sub.device)
                continue
            target = targets[sub.env.target]
            sid, ts = server_id(), now_ms()
            template: bytes | None = None
            if target.group is None:
                envelopes = {r: action_envelope(sid, sub.env.id, sub.sender, r, None, sub.env, ts) for r in recipients}
                if sub.echo:  # the sender's other devices: the peer's very envelope (``to`` the peer)
                    peer = target.to if target.sender == sub.sender else target.sender
                    envelopes[sub.sender] = envelopes.get(peer or "") or action_envelope(
                        sid, sub.env.id, sub.sender, peer, None, sub.env, ts)
            else:
                template = action_envelope(sid, sub.env.id, sub.sender, None, target.group, sub.env, ts)
                envelopes = {r: address(template, r) for r in recipients}
                if sub.echo:  # the sender's other devices: the group's envelope, ``to`` null
                    envelopes[sub.sender] = template
            body = bytes(sub.env.body) if isinstance(sub.env, EditIn) else b""
            emoji = "" if isinstance(sub.env, EditIn | DeleteIn) else sub.env.emoji
            accepted.append((sub, NewAction(sid, sub.env.id, sub.sender, _kind(sub.env), target.server_id, ts,
                                            body, emoji, envelopes, sub.device if sub.echo else ""),
                             template, recipients))
        if not accepted:
            return
        results = await self._store.apply_actions([a for _, a, _, _ in accepted])
        copies = await self._acceptor.pending_copies(results)
        acks: dict[tuple[str, str, str], list[bytes]] = defaultdict(list)  # by (node, sender, its device)
        deliveries: list[tuple[str, bytes]] = []
        echoes: list[tuple[str, str, bytes]] = []  # (sender, its sending device, envelope) for its other devices
        fan_outs: list[tuple[str, list[str], bytes]] = []
        for (sub, action, template, recipients), result in zip(accepted, results, strict=True):
            acks[(sub.node, sub.sender, sub.device)].append(ack_envelope(sub.env.id, result.server_id, result.ts))
            if result.duplicate:
                for user, env in copies.pop(result.server_id, []):
                    if user == sub.sender:
                        echoes.append((user, sub.device, env))
                    else:
                        deliveries.append((user, env))
                continue
            if sub.sender in action.envelopes:
                echoes.append((sub.sender, sub.device, action.envelopes[sub.sender]))
            if template is None:
                deliveries.extend((u, env) for u, env in action.envelopes.items() if u != sub.sender)
            elif recipients:
                fan_outs.append((targets[action.target].group or "", recipients, template))
        await self._outlet.to_nodes([(node, sender, envs, device) for (node, sender, device), envs in acks.items()])
        await self._outlet.deliver(deliveries)
        await self._outlet.fan_out_many(fan_outs)
        if echoes:
            await self._outlet.copies(echoes)

    def _check(self, sub: ActionSubmission, target: StoredMessage | None, groups: dict[str, Group | None],
               now: int) -> list[str]:
        """The users ``sub`` goes to (none for a delete for me); ``Refusal`` when the sender may not."""
        env, sender = sub.env, sub.sender
        missing = Refusal("not_found", f"no message {env.target!r} in your conversations")
        if target is None:
            raise missing
        if target.group is not None:
            group = groups.get(target.group)
            if group is None or not group.is_member(sender):
                raise missing
            others = [m for m in group.member_ids() if m != sender]
        else:
            if sender not in (target.sender, target.to):
                raise missing
            other = target.to if sender == target.sender else target.sender
            others = [] if other is None or other == sender else [other]
        own = target.sender == sender
        if isinstance(env, EditIn):
            if not own:
                raise Refusal("forbidden", "only its sender may edit a message")
            if target.deleted:
                raise Refusal("not_found", f"message {env.target!r} was deleted")
            if now - target.ts > self._edit_window_ms:
                raise Refusal("edit_window_passed", f"message {env.target!r} is older than the edit window "
                                                    f"({self._edit_window_ms // 1000} s)")
        elif isinstance(env, DeleteIn):
            if env.scope == "me":
                return []
            if not own:
                raise Refusal("forbidden", "only its sender may delete a message for everyone")
        elif target.deleted:
            raise Refusal("not_found", f"message {env.target!r} was deleted")
        return others


def _kind(env: ActionIn) -> ActionKind:
    if isinstance(env, EditIn):
        return "edit"
    if isinstance(env, DeleteIn):
        return "delete" if env.scope == "everyone" else "hide"
    return "unreact" if env.remove else "react"
