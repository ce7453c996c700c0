"""The store interface: users, devices, push tokens, groups, messages (history) and pending inbox items.

Every method is a coroutine; implementations run blocking drivers off the event loop.
Methods raise ``NotFoundError`` / ``ConflictError`` from ``chatmq.core.errors`` where named,
and ``StoreError`` when the backend fails (the call then had no effect).

Presence (the session registry of cluster mode) is ``user -> (node, epoch)``: ``set_online``
keeps the newest epoch, ``set_offline`` removes only the entry it belongs to (same node, epoch
not newer), so a late disconnect from an old node cannot erase a newer connection. Writes for
one user come from one consumer at a time (``chat.presence`` is keyed by user).

Pending items are what a user's inbox still owes them, in insertion order (``seq``):
``kind="message"`` items stay until the user confirms them with a ``delivered``
receipt (``remove_pending``); ``kind="notice"`` items (receipts and events for a user
who was offline) are removed once replayed (``remove_notices``).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from chatmq.core.errors import ChatMQError, ConflictError
from chatmq.core.ids import now_ms
from chatmq.core.service import Service


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    username: str
    display_name: str | None
    password_hash: str
    created_at: int  # ms
    disabled: bool = False
    is_admin: bool = False
    token_version: int = 0  # tokens carrying an older version are revoked (``Store.revoke_tokens``)

    @classmethod
    def new(cls, user_id: str, username: str, password_hash: str, display_name: str | None,
            is_admin: bool = False) -> User:
        """A user being registered now (not disabled)."""
        return cls(user_id, username, display_name, password_hash, now_ms(), False, is_admin)


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    owner_id: str
    name: str
    secret_hash: str
    created_at: int  # ms
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class PushToken:
    user_id: str
    platform: str
    token: str
    created_at: int  # ms


@dataclass(frozen=True, slots=True)
class GroupMember:
    user_id: str
    role: Literal["admin", "member"]
    joined_at: int  # ms


@dataclass(frozen=True, slots=True)
class Group:
    group_id: str
    name: str
    created_by: str
    created_at: int  # ms
    #: in the group's order: the creator, then the members as given at creation and as added since
    #: (an explicit position in the store; members added together share their ``joined_at``)
    members: tuple[GroupMember, ...] = ()

    def member_ids(self) -> list[str]:
        return [m.user_id for m in self.members]

    def is_member(self, user_id: str) -> bool:
        return any(m.user_id == user_id for m in self.members)

    def is_admin(self, user_id: str) -> bool:
        return any(m.user_id == user_id and m.role == "admin" for m in self.members)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message the router accepts: one history row plus one pending item per recipient.

    ``body`` is the message body's JSON (the client's bytes, validated at the edge); ``envelopes``
    maps each recipient user id to the exact inbox envelope (JSON bytes, made once at accept time)
    stored as that recipient's pending item and delivered as it is (a 1:1 message has one
    recipient; a group message one per member except the sender).
    """

    server_id: str
    client_id: str
    sender: str
    to: str | None
    group: str | None
    conversation: str
    body: bytes
    ts: int  # ms
    envelopes: dict[str, bytes] = field(default_factory=dict)
    reply_to: str | None = None  # the server id of a message of the same conversation (checked)
    device: str = ""  # the sender's MQTT client id: when ``envelopes`` holds a copy for the sender
    # (its other devices'), that device is marked as having it (``DeviceConfirm``)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as kept in history, with what message actions did to it: ``edited_at`` (ms, the last
    edit), ``deleted`` (for everyone: ``body`` is then empty), ``reactions`` (emoji -> user ids, in the
    order they reacted; filled in by ``history`` only)."""

    server_id: str
    client_id: str
    sender: str
    to: str | None
    group: str | None
    conversation: str
    body: dict[str, Any]
    ts: int
    reply_to: str | None = None
    edited_at: int | None = None
    deleted: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AcceptResult:
    """Outcome of ``accept_messages`` for one message.

    ``duplicate`` is True when (sender, client_id) was seen before: nothing was stored and
    ``server_id``/``ts`` are those of the earlier message.
    """

    server_id: str
    ts: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Route:
    """Where a receipt for a message goes and whom the message was for: ``sender`` gets the
    receipt; ``to`` is the recipient of a 1:1 message (None for a group message), ``group`` the
    group of a group message."""

    server_id: str
    sender: str
    to: str | None
    group: str | None

    @classmethod
    def of(cls, message: StoredMessage) -> Route:
        return cls(message.server_id, message.sender, message.to, message.group)


@dataclass(frozen=True, slots=True)
class DeviceConfirm:
    """A ``delivered`` receipt from device ``client`` of ``user``, who has other devices (``others``,
    their client ids): the user's pending items among ``ids`` are marked as had by that device, and
    each goes once every one of ``others`` has it too (``PendingStore.confirm_on_device``)."""

    user: str
    client: str
    ids: list[str]
    others: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserSession:
    """One device (MQTT client id) a user connected with: first and last connect (ms)."""

    user_id: str
    client_id: str
    first_seen: int
    last_seen: int


@dataclass(frozen=True, slots=True)
class PendingItem:
    seq: int
    item_id: str
    kind: Literal["message", "notice"]
    envelope: bytes  # the inbox envelope's JSON, as stored


ActionKind = Literal["edit", "delete", "hide", "react", "unreact"]


@dataclass(frozen=True, slots=True)
class NewAction:
    """A message action the router accepted (it checked that ``sender`` may) on message ``target``: one
    dedupe claim (sender, client_id), its effect on the target, and one pending item per envelope (as a
    ``NewMessage``'s: delivered until the recipient's ``delivered`` receipt).

    ``kind``: ``edit`` (``body`` replaces the target's; ``edited_at`` = ``ts``), ``delete`` (for everyone:
    the body, the reactions and the pending copies of the target and of its edits are removed),
    ``hide`` (delete for me: the target leaves ``sender``'s history), ``react``/``unreact`` (``sender``'s
    ``emoji``)."""

    server_id: str
    client_id: str
    sender: str
    kind: ActionKind
    target: str
    ts: int  # ms
    body: bytes = b""
    emoji: str = ""
    envelopes: dict[str, bytes] = field(default_factory=dict)
    device: str = ""  # the sender's MQTT client id: when ``envelopes`` holds a copy for the sender (its other
    # devices'), that device is marked as having it (as a ``NewMessage``'s)


class UserStore(abc.ABC):
    """The store's role: users, their push tokens and devices."""

    @abc.abstractmethod
    async def create_user(
        self, user_id: str, username: str, password_hash: str, display_name: str | None, is_admin: bool = False
    ) -> User:
        """Insert a user; ``ConflictError`` when the username (or the user id) is taken."""

    @abc.abstractmethod
    async def get_user(self, user_id: str) -> User | None: ...

    @abc.abstractmethod
    async def get_user_by_username(self, username: str) -> User | None: ...

    @abc.abstractmethod
    async def user_ids_by_usernames(self, usernames: list[str]) -> dict[str, str]:
        """``{username: user_id}`` for those of ``usernames`` that are registered."""

    @abc.abstractmethod
    async def existing_user_ids(self, user_ids: list[str]) -> set[str]:
        """The subset of ``user_ids`` that are registered users."""

    @abc.abstractmethod
    async def set_user_flags(self, user_id: str, *, disabled: bool | None = None, is_admin: bool | None = None) -> None:
        """Change the given flags (``None`` leaves one as is); ``NotFoundError`` when there is no such user."""

    @abc.abstractmethod
    async def count_users(self) -> int: ...

    @abc.abstractmethod
    async def revoke_tokens(self, user_id: str) -> int:
        """Raise the user's ``token_version`` (every token issued before carries a lower one and
        stops working); returns the new version, which never goes down. ``NotFoundError`` when
        there is no such user."""

    @abc.abstractmethod
    async def spend_refresh_token(self, token_id: str, family: str, user_id: str, expires_at: int,
                                  grace_ms: int = 0) -> bool:
        """Spend refresh token ``token_id`` of login ``family`` (of ``user_id``): True when it was
        not spent before, or first spent no more than ``grace_ms`` ago, and its family is not
        revoked, so the next token of the family may be issued. A token spent before that (the
        same ``token_id`` again) revokes its family (the one recorded when it was first spent) and
        returns False; so does any token of a revoked family. Atomic across processes: with no
        grace, of concurrent spends of one token at most one gets True.
        ``expires_at`` (ms) is when no token of the family issued so far, nor the next, is valid any
        more: the records of this call may be forgotten after it."""

    @abc.abstractmethod
    async def delete_user(self, user_id: str) -> None:
        """Delete a user's account: the user (its username and phone number are free again), its devices,
        push tokens, pending items, contacts and blocks (both ways), phone hashes and conversation states.
        Group memberships are the caller's to end first (they have rules and events). ``NotFoundError``
        when there is no such user."""

    @abc.abstractmethod
    async def list_users(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[User]:
        """Up to ``limit`` users whose username starts with ``prefix`` and sorts after ``after``
        (all when None), by username."""

    @abc.abstractmethod
    async def add_push_token(self, user_id: str, platform: str, token: str) -> PushToken:
        """Register ``token`` for ``user_id``; a token held by anyone (even another user) is
        re-registered: it moves to ``user_id`` with the new platform and a fresh ``created_at``."""

    @abc.abstractmethod
    async def remove_push_token(self, user_id: str, token: str) -> bool:
        """Remove the caller's token; False when the caller had no such token."""

    @abc.abstractmethod
    async def push_tokens(self, user_id: str) -> list[PushToken]:
        """The user's tokens, oldest registration first."""

    @abc.abstractmethod
    async def create_device(self, device_id: str, owner_id: str, name: str, secret_hash: str) -> Device:
        """Insert a device; ``ConflictError`` when ``device_id`` exists."""

    @abc.abstractmethod
    async def get_device(self, device_id: str) -> Device | None:
        """The device, revoked or not."""

    @abc.abstractmethod
    async def list_devices(self, owner_id: str) -> list[Device]:
        """The owner's devices that are not revoked, oldest first."""

    @abc.abstractmethod
    async def revoke_device(self, owner_id: str, device_id: str) -> bool:
        """Revoke the owner's device; False when the owner has no such live device."""

    @abc.abstractmethod
    async def count_devices(self) -> int:
        """Live (not revoked) devices."""


class GroupStore(abc.ABC):
    """The store's role: groups and their members."""

    @abc.abstractmethod
    async def create_group(self, group_id: str, name: str, creator: str, members: list[str]) -> Group:
        """Create a group: ``creator`` is its admin (first in its order), ``members`` plain members after it
        in the order given (repeats and the creator skipped), all joined in the same ms
        (``common.founders``). ``ConflictError`` when ``group_id`` exists."""

    @abc.abstractmethod
    async def get_group(self, group_id: str) -> Group | None: ...

    @abc.abstractmethod
    async def get_groups(self, group_ids: list[str]) -> dict[str, Group]:
        """The groups among ``group_ids`` that exist, by id, in one operation (a router batch's groups)."""

    @abc.abstractmethod
    async def groups_of(self, user_id: str) -> list[Group]:
        """The groups ``user_id`` is a member of, oldest (by the group's ``created_at``) first."""

    @abc.abstractmethod
    async def rename_group(self, group_id: str, name: str) -> Group:
        """``NotFoundError`` when there is no such group."""

    @abc.abstractmethod
    async def add_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Add plain members in the order given, after those already in the group, all joined in the same
        ms (``common.newcomers``); returns those actually added (not already members). ``NotFoundError``
        when there is no such group."""

    @abc.abstractmethod
    async def list_groups(self, after: str | None = None, limit: int = 100) -> list[Group]:
        """Up to ``limit`` groups with a group id above ``after`` (all when None), by group id
        (a stable order for paging; ids are random, not time-ordered)."""

    @abc.abstractmethod
    async def delete_group(self, group_id: str) -> Group:
        """Delete a group with its member list (its history and members' pending items stay);
        returns the group as it was. ``NotFoundError`` when there is no such group."""

    @abc.abstractmethod
    async def remove_member(self, group_id: str, user_id: str) -> str | None:
        """Remove a member. When the last admin leaves and members remain, the longest-standing
        member (the first in the group's order) becomes admin and its id is returned; otherwise None.
        An empty group is deleted. ``NotFoundError`` when ``user_id`` is not a member."""


class MessageStore(abc.ABC):
    """The store's role: accepting messages (deduped by sender and client id) and reading history."""

    @abc.abstractmethod
    async def accept_messages(self, messages: list[NewMessage]) -> list[AcceptResult]:
        """Atomically store a batch: for each message, unless (sender, client_id) was seen,
        a history row and a pending ``message`` item per envelope. Results are in input order.
        A repeated (sender, client_id) inside the batch counts as a duplicate of the first."""

    @abc.abstractmethod
    async def import_messages(self, messages: Sequence[StoredMessage]) -> None:
        """Add ``messages`` straight to history, with their dedupe claims and no pending items: bulk
        loading (imports, and ``chatmq bench chat --prefill``). One transaction per call where the
        backend has them. A server id or (sender, client_id) already stored fails with ``StoreError``
        (on MongoDB the messages before it in the call may stay)."""

    @abc.abstractmethod
    async def get_messages(self, server_ids: list[str]) -> list[StoredMessage]:
        """The stored messages among ``server_ids`` (unknown ids are skipped)."""

    @abc.abstractmethod
    async def history(self, conversation: str, before: str | None, limit: int,
                      viewer: str | None = None) -> list[StoredMessage]:
        """A conversation's messages with server id < ``before`` (all when None), newest first, with their
        reactions; with ``viewer``, without the messages that user deleted for itself."""

    @abc.abstractmethod
    async def recent_messages(self, user_id: str, groups: list[str], after: str, limit: int,
                              before: str | None = None) -> list[StoredMessage]:
        """Up to ``limit`` of the newest messages with a server id above ``after`` (and below ``before``,
        when given) that ``user_id`` sent,
        got 1:1, or that went to one of ``groups``, oldest first: a new device's first sync
        (``sync_window``). Reads history: never on the message path, once per new device."""

    @abc.abstractmethod
    async def count_messages(self) -> int:
        """Messages in history (for operators' statistics: may be an estimate where an exact count
        would scan the collection)."""


class ActionStore(abc.ABC):
    """The store's role: message actions (edit, delete, reaction), deduped by sender and client id."""

    @abc.abstractmethod
    async def apply_actions(self, actions: list[NewAction]) -> list[AcceptResult]:
        """Store a batch of actions in order: for each, unless (sender, client_id) was seen (then a
        duplicate with the earlier server id and ts), its effect on the target (see ``NewAction``) and a
        pending ``message`` item per envelope. Results are in input order. An edit or a reaction of a
        target deleted meanwhile changes nothing."""


class PendingStore(abc.ABC):
    """The store's role: what waits for a user: pending messages until its ``delivered`` receipt, and notices."""

    @abc.abstractmethod
    async def add_notices(self, notices: list[tuple[str, str, bytes]]) -> None:
        """Append ``(user_id, item_id, envelope JSON)`` notice items to users' pending queues."""

    @abc.abstractmethod
    async def pending(self, user_id: str, after_seq: int, limit: int) -> list[PendingItem]:
        """Up to ``limit`` of the user's pending items with seq > ``after_seq``, in seq order."""

    @abc.abstractmethod
    async def pending_copies(self, server_ids: list[str]) -> list[tuple[str, bytes]]:
        """``(user_id, envelope JSON)`` of every pending ``message`` item among ``server_ids`` (whoever
        holds it), in seq order: what a message still owes its recipients."""

    @abc.abstractmethod
    async def take_pending(self, wanted: list[tuple[str, list[str]]]) -> list[list[Route]]:
        """For each ``(user_id, server_ids)``, remove the user's pending ``message`` items among
        ``server_ids`` and return the routes of those removed, in the order of ``server_ids``: what a
        ``delivered`` receipt does, for a whole batch of receipts at once (one transaction where the
        backend has them). Touches only the pending working set, never history."""

    @abc.abstractmethod
    async def held_routes(self, wanted: list[tuple[str, list[str]]]) -> list[list[Route]]:
        """As ``take_pending`` without removing anything: the routes of the pending ``message`` items
        each user holds among its ``server_ids`` (for ``read`` receipts)."""

    @abc.abstractmethod
    async def confirm_on_device(self, wanted: list[DeviceConfirm]) -> list[list[Route]]:
        """For each ``DeviceConfirm``: mark the user's pending ``message`` items among ``ids`` as had by
        its device, remove those every other device of the user has had too (with their marks), and
        return the routes of the items found pending, in the order of ``ids``. Only the pending
        working set and the marks are touched, by key."""

    @abc.abstractmethod
    async def device_has(self, user_id: str, client_id: str, item_ids: list[str]) -> set[str]:
        """Those of ``item_ids`` marked as had by device ``client_id`` of ``user_id``."""

    async def remove_pending(self, user_id: str, server_ids: list[str]) -> list[str]:
        """Remove the user's pending ``message`` items among ``server_ids``; returns the removed ids."""
        [taken] = await self.take_pending([(user_id, server_ids)])
        return [r.server_id for r in taken]

    @abc.abstractmethod
    async def remove_notices(self, user_id: str, seqs: list[int]) -> None:
        """Remove the user's ``notice`` items with these seqs."""

    @abc.abstractmethod
    async def count_pending(self, user_id: str | None = None) -> int:
        """Pending ``message`` items of one user, or of everyone."""


class SessionStore(abc.ABC):
    """The store's role: the devices (MQTT client ids) each user connects with."""

    @abc.abstractmethod
    async def touch_session(self, user_id: str, client_id: str, now: int) -> tuple[bool, list[UserSession]]:
        """Record a connect of device ``client_id`` of ``user_id`` at ``now`` (ms): True when the device
        is new, and the user's devices as they are now (this one included)."""

    @abc.abstractmethod
    async def sessions_of(self, user_ids: list[str]) -> dict[str, list[UserSession]]:
        """Each user's devices (those of ``user_ids`` with any), oldest first."""

    @abc.abstractmethod
    async def remove_session(self, user_id: str, client_id: str) -> bool:
        """Forget device ``client_id`` of ``user_id`` (signed out) with its marks; pending items every
        remaining device has had go too. False when the user has no such device."""

    @abc.abstractmethod
    async def stale_sessions(self, before: int, limit: int) -> list[UserSession]:
        """Devices whose latest connect (``last_seen``, ms) is before ``before``, oldest first, at most
        ``limit`` (read by an index on ``last_seen``)."""


class PresenceStore(abc.ABC):
    """The store's role: the session registry: which nodes each online user is on (one entry per
    (user, node), with the epoch of the user's latest inbox subscription there: a user's devices may
    be on several nodes)."""

    @abc.abstractmethod
    async def set_online(self, user_id: str, node: str, epoch: int) -> bool:
        """Record ``user_id`` on ``node`` unless a newer epoch is recorded for that node; True when recorded."""

    @abc.abstractmethod
    async def set_offline(self, user_id: str, node: str, epoch: int) -> bool:
        """Remove the user's entry on ``node`` if its epoch is not above ``epoch``; True when removed."""

    @abc.abstractmethod
    async def user_nodes(self, user_ids: list[str]) -> dict[str, list[str]]:
        """``{user_id: [node, ...]}`` for those of ``user_ids`` that are online, newest entry first."""

    async def nodes_of(self, user_ids: list[str]) -> dict[str, str]:
        """``{user_id: node}`` (the newest entry's) for those of ``user_ids`` that are online."""
        return {user: nodes[0] for user, nodes in (await self.user_nodes(user_ids)).items()}

    @abc.abstractmethod
    async def forget_node(self, node: str, before_epoch: int) -> int:
        """Remove every entry on ``node`` with an epoch below ``before_epoch`` (the node restarted);
        returns how many were removed."""

    @abc.abstractmethod
    async def count_online(self) -> int:
        """Users with an entry."""


Visibility = Literal["contacts", "nobody"]


@dataclass(frozen=True, slots=True)
class PresenceState:
    """A user's presence as its contacts see it: ``state`` ``online``/``offline``/``away`` since ``since``
    (ms; None: never seen), and whom it is shown to (``visibility``)."""

    state: str = "offline"
    since: int | None = None
    visibility: Visibility = "contacts"


class PresenceStateStore(abc.ABC):
    """The store's role: each user's announced presence (state, since when) and presence privacy setting.
    A user with nothing stored is ``PresenceState()`` (offline, never seen, shown to contacts)."""

    @abc.abstractmethod
    async def presence_states(self, user_ids: list[str]) -> dict[str, PresenceState]:
        """The state of each of ``user_ids`` (every one is a key)."""

    @abc.abstractmethod
    async def set_presence_state(self, user_id: str, state: str, since: int) -> None:
        """Record ``user_id``'s state (its visibility stays)."""

    @abc.abstractmethod
    async def set_presence_visibility(self, user_id: str, visibility: Visibility) -> None:
        """Record whom ``user_id``'s presence is shown to (its state stays)."""

    @abc.abstractmethod
    async def present_users(self) -> list[str]:
        """The users whose state is ``online`` or ``away`` (read when a node starts: a scan)."""


@dataclass(frozen=True, slots=True)
class Contact:
    """A user on another user's server-side contact list, since ``added_at`` (ms)."""

    user_id: str
    added_at: int


class SocialStore(abc.ABC):
    """The store's role: who blocked whom, server-side contact lists, users' verified phone numbers, and
    the keyed hashes of the numbers in users' address books that are no user's."""

    @abc.abstractmethod
    async def block(self, blocker: str, blocked: str) -> bool:
        """Record that ``blocker`` blocks ``blocked``; False when it already did."""

    @abc.abstractmethod
    async def unblock(self, blocker: str, blocked: str) -> bool:
        """Remove the block; False when there was none."""

    @abc.abstractmethod
    async def blocked_by(self, blocker: str) -> list[str]:
        """Whom ``blocker`` blocks, oldest block first."""

    @abc.abstractmethod
    async def blockers_of(self, users: list[str]) -> dict[str, set[str]]:
        """For each of ``users``, who blocks that user (an empty set for nobody); every one of ``users``
        is a key."""

    @abc.abstractmethod
    async def add_contact(self, owner: str, contact: str) -> bool:
        """Put ``contact`` on ``owner``'s list; False when it was already there."""

    @abc.abstractmethod
    async def remove_contact(self, owner: str, contact: str) -> bool:
        """Take ``contact`` off ``owner``'s list; False when it was not there."""

    @abc.abstractmethod
    async def contacts_of(self, owner: str) -> list[Contact]:
        """``owner``'s list, oldest first."""

    @abc.abstractmethod
    async def mutual_contacts(self, user_id: str) -> set[str]:
        """The users who have ``user_id`` on their list and are on ``user_id``'s list (each has the other):
        whom ``user_id``'s presence is shown to, and whose presence ``user_id`` sees."""

    @abc.abstractmethod
    async def set_phone(self, user_id: str, phone: str | None) -> None:
        """Set (or with None, clear) ``user_id``'s verified phone number (E.164); ``ConflictError`` when
        another user has it."""

    @abc.abstractmethod
    async def phone_of(self, user_id: str) -> str | None: ...

    @abc.abstractmethod
    async def user_ids_by_phones(self, phones: list[str]) -> dict[str, str]:
        """``{phone: user_id}`` for those of ``phones`` that are users' verified numbers."""

    @abc.abstractmethod
    async def add_phone_hashes(self, owner: str, hashes: list[str]) -> None:
        """Keep the keyed hashes of numbers in ``owner``'s address book that are no user's (never the
        numbers themselves); repeats are kept once."""

    @abc.abstractmethod
    async def phone_hashes(self, owner: str) -> list[str]:
        """The hashes kept for ``owner``, in the order first added."""


@dataclass(frozen=True, slots=True)
class ConversationHead:
    """A conversation's latest message: a 1:1 conversation of users ``a`` and ``b`` (``group`` None), or a
    group's; kept by the store as messages are accepted (one upsert per conversation per batch)."""

    conversation: str
    a: str | None
    b: str | None
    group: str | None
    last_id: str
    last_sender: str
    last_body: dict[str, Any]
    last_ts: int


@dataclass(frozen=True, slots=True)
class ConversationState:
    """One user's state of one conversation: read up to server id ``read_up_to`` (None: nothing), ``muted``."""

    read_up_to: str | None = None
    muted: bool = False


class ConversationStore(abc.ABC):
    """The store's role: the conversation list (each conversation's latest message, kept by
    ``accept_messages``), users' read markers and mutes, and what is unread."""

    @abc.abstractmethod
    async def conversation_heads(self, user_id: str, groups: list[str], before: str | None,
                                 limit: int) -> list[ConversationHead]:
        """The 1:1 conversations of ``user_id`` and those of ``groups`` whose latest message id is below
        ``before`` (all when None), newest latest message first, at most ``limit``."""

    @abc.abstractmethod
    async def conversation_states(self, user_id: str, conversations: list[str]) -> dict[str, ConversationState]:
        """``user_id``'s state of each of ``conversations`` that has one."""

    @abc.abstractmethod
    async def readers(self, conversation: str) -> dict[str, str]:
        """``{user_id: read_up_to}`` of everyone who marked ``conversation`` read."""

    @abc.abstractmethod
    async def mark_read(self, user_id: str, conversation: str, up_to: str) -> str | None:
        """Move ``user_id``'s read marker of ``conversation`` up to ``up_to`` (never back); returns the
        marker as it was before (None: none)."""

    @abc.abstractmethod
    async def set_muted(self, user_id: str, conversation: str, muted: bool) -> None: ...

    @abc.abstractmethod
    async def unread(self, conversation: str, user_id: str, after: str | None, up_to: str | None,
                     limit: int) -> list[tuple[str, str]]:
        """``(server id, sender)`` of the messages of ``conversation`` not sent by ``user_id`` with an id
        above ``after`` and at most ``up_to`` (None: no bound), oldest first, at most ``limit``."""


class SearchStore(abc.ABC):
    """The store's role: full-text search over the ``text`` strings of message bodies."""

    @abc.abstractmethod
    async def search_messages(self, user_id: str, groups: list[str], words: list[str], conversation: str | None,
                              limit: int) -> list[StoredMessage]:
        """Messages whose body's ``text`` holds every one of ``words`` (case-insensitive; each a whole word,
        or on FerretDB a substring), among the 1:1 messages sent or received by ``user_id`` and those of
        ``groups`` (only ``conversation`` when given), newest first, at most ``limit``."""


#: A shadow document's bounds (docs/contract.md, "Devices"): the JSON of ``desired`` and of ``reported``
#: each at most ``SHADOW_MAX_BYTES``, nested at most ``SHADOW_MAX_DEPTH`` objects deep.
SHADOW_MAX_BYTES = 8192
SHADOW_MAX_DEPTH = 6


class DocumentLimitError(ChatMQError):
    """A document (a shadow's state, a command's params) that breaks a bound: ``kind`` is ``too_large``
    or ``too_deep``."""

    def __init__(self, kind: Literal["too_large", "too_deep"], detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((_depth(v) for v in value), default=0)
    return 0


def check_document(name: str, value: dict[str, Any]) -> None:
    """``DocumentLimitError`` unless ``value`` nests at most ``SHADOW_MAX_DEPTH`` objects and its JSON
    is at most ``SHADOW_MAX_BYTES``."""
    if _depth(value) > SHADOW_MAX_DEPTH:
        raise DocumentLimitError("too_deep", f"{name} is nested deeper than {SHADOW_MAX_DEPTH} objects")
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > SHADOW_MAX_BYTES:
        raise DocumentLimitError("too_large", f"{name} would be {size} bytes of JSON; at most {SHADOW_MAX_BYTES} "
                                              "are kept")


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` merged into ``base`` (objects recursively; ``None`` deletes a key); a new dict."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif isinstance(value, dict):
            out[key] = _merge({}, value)
        else:
            out[key] = value
    return out


def _delta(desired: dict[str, Any], reported: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, want in desired.items():
        have = reported.get(key)
        if isinstance(want, dict) and isinstance(have, dict):
            sub = _delta(want, have)
            if sub:
                out[key] = sub
        elif want != have:
            out[key] = want
    return out


@dataclass(frozen=True, slots=True)
class Shadow:
    """A device's shadow: the state its owner wants (``desired``), the state it reports, and a
    ``version`` that grows by one with every change (0: never written)."""

    device_id: str
    desired: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    updated_at: int = 0  # ms

    def delta(self) -> dict[str, Any]:
        """The desired keys whose value differs from the reported one (objects compared key by key)."""
        return _delta(self.desired, self.reported)

    def changed(self, *, desired: dict[str, Any] | None = None, reported: dict[str, Any] | None = None) -> Shadow:
        """The next version with ``desired``/``reported`` merged in (``None`` values delete keys);
        ``DocumentLimitError`` when a patch or the result breaks the bounds."""
        new_desired, new_reported = self.desired, self.reported
        for name, patch in (("desired", desired), ("reported", reported)):
            if patch is None:
                continue
            if _depth(patch) > SHADOW_MAX_DEPTH:
                raise DocumentLimitError("too_deep", f"{name} is nested deeper than {SHADOW_MAX_DEPTH} objects")
            merged = _merge(self.desired if name == "desired" else self.reported, patch)
            check_document(name, merged)
            if name == "desired":
                new_desired = merged
            else:
                new_reported = merged
        return Shadow(self.device_id, new_desired, new_reported, self.version + 1, now_ms())

    def document(self) -> dict[str, Any]:
        """The shadow as the API and the device see it."""
        return {"desired": self.desired, "reported": self.reported, "delta": self.delta(),
                "version": self.version, "updated_at": self.updated_at}


class ShadowStore(abc.ABC):
    """The store's role: device shadows, one document per device, changed by compare-and-swap on
    its version."""

    @abc.abstractmethod
    async def get_shadow(self, device_id: str) -> Shadow:
        """The device's shadow (an empty one of version 0 when never written)."""

    @abc.abstractmethod
    async def swap_shadow(self, shadow: Shadow) -> bool:
        """Write ``shadow`` if the stored version is ``shadow.version - 1`` (none stored: 0); False
        when another change came first."""

    async def change_shadow(self, device_id: str, *, desired: dict[str, Any] | None = None,
                            reported: dict[str, Any] | None = None, version: int | None = None) -> Shadow:
        """Merge ``desired``/``reported`` into the device's shadow and return the new one. With
        ``version``: ``ConflictError`` unless that is the current version; without, retried on a
        lost race. ``DocumentLimitError`` when the result would break the bounds."""
        for _ in range(20):
            current = await self.get_shadow(device_id)
            if version is not None and version != current.version:
                raise ConflictError(f"the shadow is at version {current.version}, not {version}")
            new = current.changed(desired=desired, reported=reported)
            if await self.swap_shadow(new):
                return new
            if version is not None:
                raise ConflictError(f"the shadow changed after version {version}")
        raise ConflictError("the shadow keeps changing; try again")


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """Whether a device can be reached (it reads its inbox) and on which ``node``, since when, and
    when it was last seen and why it went away (ms)."""

    device_id: str
    online: bool = False
    node: str | None = None
    epoch: int = 0
    connected_at: int | None = None
    last_seen: int | None = None
    disconnect_reason: str | None = None


class DeviceStatusStore(abc.ABC):
    """The store's role: each device's connection status. Written by the consumer of ``chat.devices``
    (one at a time per device), read by the API."""

    @abc.abstractmethod
    async def get_device_status(self, device_id: str) -> DeviceStatus:
        """The device's status (offline, never seen, when none is stored)."""

    @abc.abstractmethod
    async def put_device_status(self, status: DeviceStatus) -> None:
        """Store ``status`` as the device's, replacing any."""


#: The most commands, and the most jobs, a device can be owed at once (``DeviceOwed``).
MAX_OWED = 1000


@dataclass(frozen=True, slots=True)
class DeviceOwed:
    """What a device is owed when it next reads its inbox: its persistent commands and its jobs that
    have not finished, by id, oldest first (at most ``MAX_OWED`` of each)."""

    device_id: str
    commands: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()

    def with_command(self, command_id: str) -> DeviceOwed | None:
        """With ``command_id`` added (itself when it is there); None when the device is owed ``MAX_OWED``."""
        if command_id in self.commands:
            return self
        return None if len(self.commands) >= MAX_OWED else replace(self, commands=(*self.commands, command_id))

    def with_job(self, job_id: str) -> DeviceOwed | None:
        """With ``job_id`` added (itself when it is there); None when the device is owed ``MAX_OWED``."""
        if job_id in self.jobs:
            return self
        return None if len(self.jobs) >= MAX_OWED else replace(self, jobs=(*self.jobs, job_id))

    def without(self, *, commands: Sequence[str] = (), jobs: Sequence[str] = ()) -> DeviceOwed:
        return replace(self, commands=tuple(c for c in self.commands if c not in commands),
                       jobs=tuple(j for j in self.jobs if j not in jobs))


class DeviceOwedStore(abc.ABC):
    """The store's role: per device, one record (keyed by the device id) of what it is owed, so that a
    device's connect reads one record by key rather than querying the commands and jobs of every device.
    Written only by the consumer of ``chat.devices`` (one at a time per device), so read-modify-write is exact."""

    @abc.abstractmethod
    async def get_owed(self, device_id: str) -> DeviceOwed:
        """What the device is owed (nothing when none is stored)."""

    @abc.abstractmethod
    async def put_owed(self, owed: DeviceOwed) -> None:
        """Store ``owed`` as the device's, replacing any (removing it when it owes nothing)."""


CommandStatus = Literal["queued", "sent", "succeeded", "failed", "expired"]


@dataclass(frozen=True, slots=True)
class DeviceCommand:
    """A command for a device: ``queued`` (persistent, waiting for the device), ``sent``, then
    ``succeeded``/``failed`` by the device's ``command_result``, or ``expired`` (no answer by
    ``expires_at``, ms)."""

    command_id: str
    device_id: str
    name: str
    params: dict[str, Any]
    persistent: bool
    status: CommandStatus
    created_at: int
    expires_at: int
    result: dict[str, Any] | None = None
    error: str | None = None
    requester: str | None = None  # the user who sent it over MQTT (answered in that user's inbox)
    client_id: str | None = None  # that user's id of it

    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "expired")

    def seen_at(self, now: int) -> DeviceCommand:
        """As it stands at ``now``: a command not finished by its ``expires_at`` has expired."""
        if not self.finished() and now >= self.expires_at:
            return replace(self, status="expired")
        return self


class CommandStore(abc.ABC):
    """The store's role: commands for devices, one row (document) per command id."""

    @abc.abstractmethod
    async def add_command(self, command: DeviceCommand) -> None:
        """Insert a command; ``ConflictError`` when its id is taken."""

    @abc.abstractmethod
    async def get_command(self, command_id: str) -> DeviceCommand | None: ...

    @abc.abstractmethod
    async def put_command(self, command: DeviceCommand) -> None:
        """Replace the stored command of ``command.command_id``."""

    @abc.abstractmethod
    async def device_commands(self, device_id: str, statuses: Sequence[CommandStatus] | None = None,
                              limit: int = 100) -> list[DeviceCommand]:
        """Up to ``limit`` of the device's commands (with one of ``statuses`` as stored, when given),
        newest first."""


JobStatus = Literal["queued", "sent", "in_progress", "succeeded", "failed", "canceled"]
JOB_STATUSES: tuple[JobStatus, ...] = ("queued", "sent", "in_progress", "succeeded", "failed", "canceled")


@dataclass(frozen=True, slots=True)
class Job:
    """A job: ``document`` for each of its devices (one ``JobExecution`` each); ``canceled`` stops
    what has not finished."""

    job_id: str
    owner_id: str
    document: dict[str, Any]
    created_at: int
    canceled: bool = False


@dataclass(frozen=True, slots=True)
class JobExecution:
    """A job on one device: ``queued`` (not sent yet), ``sent``, then what the device reports
    (``in_progress`` with ``progress``, ``succeeded``, ``failed``); ``canceled`` when the job was
    canceled before it finished (read so, not stored)."""

    job_id: str
    device_id: str
    status: JobStatus = "queued"
    progress: int | None = None
    details: dict[str, Any] | None = None
    updated_at: int = 0

    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "canceled")

    def seen_in(self, job: Job) -> JobExecution:
        """As it stands in ``job``: canceled if the job is and this had not finished."""
        return replace(self, status="canceled") if job.canceled and not self.finished() else self


class JobStore(abc.ABC):
    """The store's role: jobs and their executions, one row (document) per job and per (job, device)."""

    @abc.abstractmethod
    async def add_job(self, job: Job, device_ids: list[str]) -> None:
        """Insert the job and a ``queued`` execution per device (the job first)."""

    @abc.abstractmethod
    async def get_job(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    async def cancel_job(self, job_id: str) -> None:
        """Mark the job canceled (``NotFoundError`` when there is none)."""

    @abc.abstractmethod
    async def job_executions(self, job_id: str) -> list[JobExecution]:
        """The job's executions, by device id."""

    @abc.abstractmethod
    async def get_execution(self, job_id: str, device_id: str) -> JobExecution | None: ...

    @abc.abstractmethod
    async def put_execution(self, execution: JobExecution) -> None:
        """Replace the stored execution of ``(job_id, device_id)``."""



class Store(UserStore, GroupStore, MessageStore, ActionStore, PendingStore, SessionStore, PresenceStore,
            PresenceStateStore, ShadowStore,
            DeviceStatusStore, DeviceOwedStore, CommandStore, JobStore, SocialStore, ConversationStore, SearchStore,
            Service):
    """Persistent state of chatmq, every role in one object (one implementation per backend, composed of
    one class per role). ``start()`` opens (and migrates), ``stop()`` closes; ``ping`` raises ``StoreError``
    saying why when the store cannot answer."""

    async def commit_batch(self, messages: list[NewMessage], confirms: list[tuple[str, list[str]]],
                           device_confirms: Sequence[DeviceConfirm] = ()
                           ) -> tuple[list[AcceptResult], list[list[Route]]]:
        """A router batch's writes: ``accept_messages(messages)``, then ``take_pending(confirms)`` (its
        ``delivered`` receipts of users with one device) and ``confirm_on_device(device_confirms)`` (of
        users with several; their routes follow those of ``confirms``), as one unit of work where the
        backend has transactions (one hand-off and one commit per batch however few messages it holds,
        so a paced load pays no more per message than a saturating one), one after the other where it
        does not."""
        accepted, taken = await self.accept_messages(messages), await self.take_pending(confirms)
        if device_confirms:
            taken += await self.confirm_on_device(list(device_confirms))
        return accepted, taken
