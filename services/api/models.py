"""Request and response bodies of the REST API (they make up the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chatmq.core.envelopes import ID_PATTERN
from chatmq.services.store.base import Device, DeviceCommand, DeviceStatus, Group, Shadow, StoredMessage, User

USERNAME_PATTERN = r"^[a-z0-9_.-]{3,32}$"
MAX_CONTACTS = 1000
MAX_MEMBERS_PER_REQUEST = 1000

Username = Annotated[str, Field(pattern=USERNAME_PATTERN, description="3 to 32 of a-z 0-9 _ . -")]
Password = Annotated[str, Field(min_length=8, max_length=256)]
EntityId = Annotated[str, Field(pattern=ID_PATTERN)]
GroupName = Annotated[str, Field(min_length=1, max_length=100)]
PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"
Phone = Annotated[str, Field(pattern=PHONE_PATTERN, description="E.164: + and 7 to 15 digits, the first not 0",
                             examples=["+4915112345678"])]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


# auth --------------------------------------------------------------------------
class RegisterRequest(_Body):
    """``POST /auth/register``."""

    username: Username
    password: Password
    display_name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    phone: Phone | None = Field(None, description="The user's verified phone number (E.164); others find the user "
                                                  "by it in `POST /contacts/sync`. 409 when another user has it.")


class RegisterResponse(BaseModel):
    """The new user."""

    user_id: str
    username: str


class LoginRequest(_Body):
    """``POST /auth/login``. Any string is accepted; wrong ones simply fail with 401."""

    username: Annotated[str, Field(max_length=256)]
    password: Annotated[str, Field(max_length=256)]


class AccountDeleteRequest(_Body):
    """``DELETE /users/me``: the account's password once more, so that a stolen access token alone
    cannot delete the account."""

    password: Annotated[str, Field(max_length=256)]


class RefreshRequest(_Body):
    """``POST /auth/refresh``."""

    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class TokenResponse(BaseModel):
    """Tokens from login or refresh; ``expires_in`` is the access token's lifetime in seconds."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user_id: str


# users and contacts ------------------------------------------------------------
class PublicUserOut(BaseModel):
    """``GET /users/{user_id}``: what any user may see of another."""

    user_id: str
    username: str
    display_name: str | None


class UserOut(BaseModel):
    """``GET /users/me``; ``created_at`` is in ms since the epoch."""

    user_id: str
    username: str
    display_name: str | None
    created_at: int
    phone: str | None = None
    presence_visibility: Literal["contacts", "nobody"] = "contacts"

    @classmethod
    def of(cls, user: User, phone: str | None = None,
           presence_visibility: Literal["contacts", "nobody"] = "contacts") -> UserOut:
        return cls(user_id=user.user_id, username=user.username, display_name=user.display_name,
                   created_at=user.created_at, phone=phone, presence_visibility=presence_visibility)


class UserPatch(_Body):
    """``PATCH /users/me``: the fields given change (``phone`` null removes the number;
    ``presence_visibility``: whom the caller's presence is shown to, its mutual contacts or nobody)."""

    phone: Phone | None = None
    presence_visibility: Literal["contacts", "nobody"] | None = None


class PresenceItem(BaseModel):
    """One user of ``GET /presence``: ``state`` and ``last_seen`` null when the caller may not see them."""

    user: str
    state: Literal["online", "offline", "away"] | None
    last_seen: int | None


class PresenceOut(BaseModel):
    """``GET /presence``."""

    presence: list[PresenceItem]


class ContactsSyncRequest(_Body):
    """``POST /contacts/sync``: usernames and phone numbers (E.164) from the caller's address book."""

    usernames: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=MAX_CONTACTS)] = []
    phones: Annotated[list[Phone], Field(max_length=MAX_CONTACTS)] = []


class ContactsSyncResponse(BaseModel):
    """The registered ones among the asked usernames and phone numbers."""

    registered: dict[str, str] = Field(description="username → user_id")
    phones: dict[str, str] = Field({}, description="phone number → user_id, for the numbers that are users' "
                                                   "verified numbers")


class ContactOut(BaseModel):
    """One entry of the caller's contact list; ``added_at`` in ms since the epoch."""

    user_id: str
    added_at: int


class ContactList(BaseModel):
    """``GET /contacts``: the caller's server-side contact list, oldest first."""

    contacts: list[ContactOut]


class BlockList(BaseModel):
    """``GET /blocks``: the users the caller blocks, oldest block first."""

    blocked: list[str]


# push tokens -------------------------------------------------------------------
class PushTokenRequest(_Body):
    """``POST /push-tokens``."""

    platform: Literal["android", "ios", "web"]
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class PushTokenOut(BaseModel):
    """A registered push token."""

    platform: str
    token: str
    created_at: int


class UserSessionOut(BaseModel):
    """One device (MQTT client id) the caller connected with: first and last connect (ms), and whether
    it is connected now."""

    client_id: str
    first_seen: int
    last_seen: int
    online: bool


class UserSessionsOut(BaseModel):
    """The caller's devices, oldest first."""

    sessions: list[UserSessionOut]


# devices -----------------------------------------------------------------------
class DeviceCreateRequest(_Body):
    """``POST /devices``."""

    name: Annotated[str, Field(min_length=1, max_length=100)]


class DeviceCreated(BaseModel):
    """A new device with its MQTT credentials (username = ``device_id``, password = ``secret``).

    The secret is shown only here; the server keeps only its hash.
    """

    device_id: str
    secret: str
    name: str
    created_at: int


class DeviceOut(BaseModel):
    """A live device of the caller."""

    device_id: str
    name: str
    created_at: int

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        return cls(device_id=device.device_id, name=device.name, created_at=device.created_at)


class DeviceDetail(BaseModel):
    """``GET /devices/{id}``: a device with its connection status (``online``: it reads its inbox)."""

    device_id: str
    name: str
    owner: str
    online: bool
    last_seen: int | None
    connected_at: int | None
    disconnect_reason: str | None
    created_at: int

    @classmethod
    def of(cls, device: Device, status: DeviceStatus) -> DeviceDetail:
        return cls(device_id=device.device_id, name=device.name, owner=device.owner_id, online=status.online,
                   last_seen=status.last_seen, connected_at=status.connected_at,
                   disconnect_reason=status.disconnect_reason, created_at=device.created_at)


class ShadowPatch(_Body):
    """``PATCH /devices/{id}/shadow``: ``desired`` merged into the desired state (``null`` deletes a key);
    with ``version``, only if the shadow is still at that version (else 409)."""

    desired: dict[str, Any]
    version: Annotated[int, Field(ge=0)] | None = None


class ShadowOut(BaseModel):
    """A device's shadow: ``delta`` holds the desired keys whose value differs from the reported one."""

    device_id: str
    desired: dict[str, Any]
    reported: dict[str, Any]
    delta: dict[str, Any]
    version: int
    updated_at: int

    @classmethod
    def of(cls, shadow: Shadow) -> ShadowOut:
        return cls(device_id=shadow.device_id, **shadow.document())


class CommandRequestBody(_Body):
    """``POST /devices/{id}/commands``: run ``name`` with ``params`` on the device. Plain: wait up to
    ``timeout_s`` for its answer. ``persistent``: queued for the device (delivered when it next connects)
    until ``expires_in_s`` have passed."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: Annotated[int, Field(ge=1, le=300)] = 30
    persistent: bool = False
    expires_in_s: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 24 * 3600


class CommandOut(BaseModel):
    """A command and where it stands (``queued``, ``sent``, ``succeeded``, ``failed``, ``expired``)."""

    id: str
    device_id: str
    name: str
    params: dict[str, Any]
    persistent: bool
    status: str
    result: dict[str, Any] | None
    error: str | None
    created_at: int
    expires_at: int

    @classmethod
    def of(cls, c: DeviceCommand) -> CommandOut:
        return cls(id=c.command_id, device_id=c.device_id, name=c.name, params=c.params, persistent=c.persistent,
                   status=c.status, result=c.result, error=c.error, created_at=c.created_at,
                   expires_at=c.expires_at)


class CommandAnswer(BaseModel):
    """A command's outcome: ``queued`` (202, persistent) or ``succeeded``/``failed`` (200)."""

    id: str
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None


# groups ------------------------------------------------------------------------
class GroupCreateRequest(_Body):
    """``POST /groups``: the caller becomes admin, ``members`` plain members."""

    name: GroupName
    members: Annotated[list[EntityId], Field(max_length=MAX_MEMBERS_PER_REQUEST)] = Field(
        default_factory=list
    )


class GroupRenameRequest(_Body):
    """``PATCH /groups/{id}``."""

    name: GroupName


class MembersAddRequest(_Body):
    """``POST /groups/{id}/members``."""

    members: Annotated[list[EntityId], Field(min_length=1, max_length=MAX_MEMBERS_PER_REQUEST)]


class MemberOut(BaseModel):
    """One member of a group."""

    user_id: str
    role: Literal["admin", "member"]


class GroupOut(BaseModel):
    """A group with its members; ``created_at`` is in ms since the epoch."""

    group_id: str
    name: str
    members: list[MemberOut]
    created_by: str
    created_at: int

    @classmethod
    def of(cls, group: Group) -> GroupOut:
        return cls(
            group_id=group.group_id, name=group.name, created_by=group.created_by,
            created_at=group.created_at,
            members=[MemberOut(user_id=m.user_id, role=m.role) for m in group.members],
        )


# history -----------------------------------------------------------------------
MessageStatus = Literal["sent", "delivered", "read"]


class ReceiptCounts(BaseModel):
    """Of a group message's ``recipients`` (the members other than the sender when it was sent, still
    members), how many got it (``delivered``) and how many read it."""

    recipients: int
    delivered: int
    read: int


class HistoryMessage(BaseModel):
    """A stored message, in the shape of the inbox ``message`` envelope, with what message actions did to
    it: ``edited_at`` (ms, the last edit; the body is the edited one), ``deleted`` (for everyone: the body
    is then ``{}``), ``reactions`` (emoji -> the user ids who reacted with it, in order); ``reply_to`` is
    the server id the message answers. The caller's own messages carry ``status`` (and in groups
    ``receipts``)."""

    model_config = ConfigDict(serialize_by_alias=True)

    type: Literal["message"] = "message"
    id: str
    client_id: str
    from_: str = Field(alias="from")
    to: str | None
    group: str | None
    body: dict[str, Any]
    ts: int
    reply_to: str | None = None
    edited_at: int | None = None
    deleted: bool = False
    reactions: dict[str, list[str]] = Field(default_factory=dict)
    status: MessageStatus | None = Field(None, description="The caller's own messages: sent (stored), delivered "
                                         "(every recipient confirmed it), read (every recipient marked it read)")
    receipts: ReceiptCounts | None = None

    @classmethod
    def of(cls, msg: StoredMessage, status: MessageStatus | None = None,
           receipts: ReceiptCounts | None = None) -> HistoryMessage:
        return cls.model_validate({
            "id": msg.server_id, "client_id": msg.client_id, "from": msg.sender, "to": msg.to,
            "group": msg.group, "body": msg.body, "ts": msg.ts, "reply_to": msg.reply_to,
            "edited_at": msg.edited_at, "deleted": msg.deleted, "reactions": msg.reactions,
            "status": status, "receipts": receipts,
        })


class HistoryPage(BaseModel):
    """Messages newest first; pass ``next_before`` as ``before`` for the next (older) page."""

    messages: list[HistoryMessage]
    next_before: str | None


class SearchResults(BaseModel):
    """``GET /search``: matching messages, newest first."""

    messages: list[HistoryMessage]


class LastMessage(BaseModel):
    """A conversation's latest message, as it is now: after an edit its last body (``edited_at``), after a
    delete for everyone its tombstone (``deleted``, ``body`` ``{}``), as in history."""

    model_config = ConfigDict(serialize_by_alias=True)

    id: str
    from_: str = Field(alias="from")
    body: dict[str, Any]
    ts: int
    edited_at: int | None = None
    deleted: bool = False


class GroupRef(BaseModel):
    group_id: str
    name: str


class ConversationOut(BaseModel):
    """One conversation of the caller: with a user (``peer``) or a group."""

    id: str = Field(description="The peer's user id or the group id (as in /conversations/{id}/messages)")
    kind: Literal["direct", "group"]
    peer: str | None
    group: GroupRef | None
    last_message: LastMessage
    unread: int = Field(description="Messages of others after the caller's read marker (counted up to 1000)")
    muted: bool


class ConversationPage(BaseModel):
    """Newest activity first; pass ``next_before`` as ``before`` for the next page (null: the last)."""

    conversations: list[ConversationOut]
    next_before: str | None


class ReadRequest(_Body):
    """``POST /conversations/{id}/read``: the caller read everything up to this server message id."""

    up_to: EntityId


class Health(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok"] = "ok"
