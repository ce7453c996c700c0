"""The command-line chat client, mounted by the main CLI as ``chatmq client ...``.

Commands: ``register``, ``login``, ``logout``, ``send``, ``send-file``, ``get-file``, ``listen``, ``chat``, and
the message actions ``edit``, ``delete``, ``react`` (on a message's server id, as ``send`` prints it or
``listen --ids`` shows it); over REST only: ``contacts list|add|remove|sync``, ``block``, ``unblock``,
``blocks``, ``search``, ``conversations``, ``read`` (a conversation), ``sessions list|sign-out`` (your
devices) and ``presence``, each printing readable lines (users by username).

A successful ``login`` saves a profile (``{server, user_id, username, access_token,
refresh_token, contacts}``) as ``$CHATMQ_HOME/<profile>.json`` (default
``~/.config/chatmq/``), readable by the owner only (mode 0600). The other commands use
that profile, refresh an expired access token (and save the new one), and fail with a
one-line message and exit code 1, never a traceback, when not logged in, when the
server cannot be reached or when the server refuses something. Usage errors exit 2.

TLS: an ``https://`` ``--server`` speaks HTTPS; ``--tls`` speaks MQTT over TLS (port 8883, or 8084
with ``--ws``). Both trust the system's CAs, or only ``--ca-file``'s (``$CHATMQ_CA_FILE``).
"""

from __future__ import annotations

import fcntl
import os
import queue
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import urlsplit

import orjson
import typer

from chatmq.devices.sdk import (
    ACTION_TYPES,
    AckTimeoutError,
    ApiError,
    AuthenticationError,
    ChatClient,
    ChatClientError,
    Envelope,
    MessageRejectedError,
    NotLoggedInError,
    ServerUnreachableError,
    Tokens,
)

DEFAULT_SERVER = "http://127.0.0.1:8000"
DEFAULT_MQTT_PORT = 1883
DEFAULT_WS_PORT = 8083
DEFAULT_MQTTS_PORT = 8883
DEFAULT_WSS_PORT = 8084
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

app = typer.Typer(
    name="client",
    help="Chat from the command line: register, log in, send, send files, listen, chat; edit, delete, react; "
         "contacts, blocks, search, conversations, read, sessions, presence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# ----------------------------------------------------------------------------- options

ServerOpt = Annotated[
    str | None,
    typer.Option("--server", envvar="CHATMQ_SERVER", show_default=False,
                 help=f"REST base URL (default: the profile's server, else {DEFAULT_SERVER})."),
]
MqttHostOpt = Annotated[
    str | None, typer.Option("--mqtt-host", show_default=False, help="MQTT host (default: host of --server).")
]
MqttPortOpt = Annotated[
    int | None,
    typer.Option("--mqtt-port", show_default=False,
                 help=f"MQTT port (default: {DEFAULT_MQTT_PORT}, or {DEFAULT_WS_PORT} with --ws; with --tls "
                      f"{DEFAULT_MQTTS_PORT}, or {DEFAULT_WSS_PORT} with --ws)."),
]
WsOpt = Annotated[bool, typer.Option("--ws", help="Use MQTT over WebSocket (path /mqtt).")]
TlsOpt = Annotated[bool, typer.Option("--tls", help="Use MQTT over TLS (mqtts, or wss with --ws).")]
CaFileOpt = Annotated[
    Path | None,
    typer.Option("--ca-file", envvar="CHATMQ_CA_FILE", show_default=False,
                 help="PEM CA certificates to trust for HTTPS and MQTT over TLS (default: the system's)."),
]
ProfileOpt = Annotated[str, typer.Option("--profile", envvar="CHATMQ_PROFILE", help="Saved login to use.")]
PasswordOpt = Annotated[  # not required: click prompts for it (``password`` is never None in the command)
    str | None, typer.Option("--password", envvar="CHATMQ_PASSWORD", prompt=True, hide_input=True,
                             show_default=False, help="Password (prompted, hidden, when absent).")
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the server.")]
GroupOpt = Annotated[
    str | None, typer.Option("--group", "-g", help="Send to this group id instead of a user.")
]
TargetArg = Annotated[str, typer.Argument(metavar="MESSAGE_ID", help="The message's server id (as `send` prints it).")]


# ----------------------------------------------------------------------------- profiles


@dataclass
class Profile:
    """A saved login. ``contacts`` caches ``{username: user_id}`` from contact syncs."""

    server: str
    user_id: str
    username: str
    access_token: str
    refresh_token: str | None
    contacts: dict[str, str] = field(default_factory=dict)
    #: this profile's device name (made at its first use): the server keeps messages pending per MQTT
    #: client id (a user's devices), so each command reuses ``cli-<device>-<role>`` instead of a new id a run
    device: str = ""

    def name_of(self, user_id: str | None) -> str:
        """The username for ``user_id`` when known, else the id itself."""
        if user_id is None:
            return "?"
        if user_id == self.user_id:
            return self.username
        for username, uid in self.contacts.items():
            if uid == user_id:
                return username
        return user_id


def chatmq_home() -> Path:
    """``$CHATMQ_HOME``, else ``~/.config/chatmq``."""
    home = os.environ.get("CHATMQ_HOME")
    return Path(home).expanduser() if home else Path.home() / ".config" / "chatmq"


def profile_path(name: str) -> Path:
    """Where profile ``name`` is stored; rejects names that are not plain file names."""
    if not _PROFILE_NAME.match(name) or name in (".", ".."):
        raise typer.BadParameter(f"invalid profile name {name!r} (use letters, digits, '_', '.', '-')",
                                 param_hint="--profile")
    return chatmq_home() / f"{name}.json"


def save_profile(name: str, profile: Profile) -> Path:
    """Write ``profile`` atomically with mode 0600 (directory 0700); return its path."""
    path = profile_path(name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = orjson.dumps(asdict(profile), option=orjson.OPT_INDENT_2)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    os.chmod(path, 0o600)
    return path


@contextmanager
def profile_lock(name: str) -> Iterator[None]:
    """Held while a process of profile ``name`` refreshes its tokens and saves them: the processes of
    one profile take turns (a spent refresh token sent again ends the login on the server), and the
    next one finds the saved tokens (``ChatClient.shared_tokens``) instead of spending its own."""
    path = profile_path(name).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def load_profile(name: str) -> Profile:
    """The saved profile ``name``; ``NotLoggedInError`` when there is none (or it is unreadable)."""
    path = profile_path(name)
    hint = f"not logged in (profile '{name}'); run: chatmq client login USERNAME"
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise NotLoggedInError(hint) from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise NotLoggedInError(f"profile {path} is unreadable ({exc}); log in again") from None
    try:
        return Profile(
            server=str(raw["server"]), user_id=str(raw["user_id"]), username=str(raw["username"]),
            access_token=str(raw["access_token"]),
            refresh_token=str(raw["refresh_token"]) if raw.get("refresh_token") else None,
            contacts={str(k): str(v) for k, v in (raw.get("contacts") or {}).items()},
            device=str(raw.get("device") or ""),
        )
    except (KeyError, TypeError, AttributeError):
        raise NotLoggedInError(f"profile {path} is incomplete; log in again") from None


# ----------------------------------------------------------------------------- plumbing


@dataclass(frozen=True)
class Endpoint:
    """Where the REST API and the MQTT broker are."""

    server: str
    mqtt_host: str
    mqtt_port: int
    ws: bool
    tls: bool = False
    ca_file: Path | None = None


def resolve_endpoint(server: str | None, mqtt_host: str | None, mqtt_port: int | None, ws: bool,
                     fallback_server: str | None = None, *, tls: bool = False,
                     ca_file: Path | None = None) -> Endpoint:
    """Fill in the defaults: server → profile's → ``DEFAULT_SERVER``; MQTT host ← server's host; the MQTT
    port by ``ws`` and ``tls``."""
    url = (server or fallback_server or DEFAULT_SERVER).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--server")
    if ca_file is not None and not ca_file.is_file():
        raise typer.BadParameter(f"{ca_file} is not a file", param_hint="--ca-file")
    host = mqtt_host or parts.hostname
    defaults = {(False, False): DEFAULT_MQTT_PORT, (True, False): DEFAULT_WS_PORT,
                (False, True): DEFAULT_MQTTS_PORT, (True, True): DEFAULT_WSS_PORT}
    port = mqtt_port if mqtt_port is not None else defaults[ws, tls]
    return Endpoint(url, host, port, ws, tls, ca_file)


def make_client(endpoint: Endpoint) -> ChatClient:
    """The ``ChatClient`` for ``endpoint`` (tests replace this to inject an HTTP transport)."""
    return ChatClient(endpoint.server, endpoint.mqtt_host, endpoint.mqtt_port,
                      transport="websockets" if endpoint.ws else "tcp", tls=endpoint.tls, ca_file=endpoint.ca_file)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def _handle_errors() -> Iterator[None]:
    """Turn SDK errors into one ``error: ...`` line on stderr and exit code 1."""
    try:
        yield
    except NotLoggedInError as exc:
        _fail(str(exc))
    except ServerUnreachableError as exc:
        _fail(f"server unreachable: {exc}")
    except AuthenticationError as exc:
        _fail(f"not authorized: {exc.detail}")
    except ApiError as exc:
        _fail(f"server refused the request: {exc}")
    except ChatClientError as exc:
        _fail(str(exc))


@contextmanager
def _quiet_ctrl_c() -> Iterator[None]:
    """Ctrl-C ends the command quietly with exit code 0, whenever it comes (connecting, running, closing)."""
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@contextmanager
def _session(profile_name: str, server: str | None, mqtt_host: str | None, mqtt_port: int | None,
             ws: bool, tls: bool = False, ca_file: Path | None = None,
             role: str = "send") -> Iterator[tuple[ChatClient, Profile]]:
    """A client logged in from the saved profile, with a fresh access token; closed on exit.

    Refreshed tokens are written back to the profile. The MQTT client id is the profile's device for
    ``role`` (``send`` for one-shot commands, ``listen``, ``chat``): the same one every run, so the
    server does not count a new device of the user each time (each keeps its own pending messages),
    and a ``listen`` and a ``send`` of one profile running at once do not take each other's session.
    """
    profile = load_profile(profile_name)
    if not profile.device:
        profile.device = uuid.uuid4().hex[:12]
        save_profile(profile_name, profile)
    endpoint = resolve_endpoint(server, mqtt_host, mqtt_port, ws, profile.server, tls=tls, ca_file=ca_file)
    client = make_client(endpoint)
    client.client_id = f"cli-{profile.device}-{role}"
    try:
        client.set_tokens(profile.user_id, profile.access_token, profile.refresh_token)

        def persist(tokens: Tokens) -> None:
            profile.access_token = tokens.access_token
            profile.refresh_token = tokens.refresh_token
            save_profile(profile_name, profile)

        def shared() -> Tokens:  # what another process of this profile refreshed meanwhile
            saved = load_profile(profile_name)
            return Tokens(saved.user_id, saved.access_token, saved.refresh_token, None)

        client.on_tokens_changed = persist
        client.shared_tokens = shared
        client.refresh_lock = partial(profile_lock, profile_name)
        if client.token_needs_refresh():
            client.refresh()
        yield client, profile
    finally:
        client.on_connection_change = None  # closing is not a lost connection
        client.close()


def _resolve_user(client: ChatClient, profile: Profile, profile_name: str, username: str) -> str:
    """The user id of ``username`` via contact sync (cached in the profile)."""
    found = client.contacts([username])
    user_id = found.get(username)
    if user_id is None:
        _fail(f"no such user: {username}")
    if profile.contacts.get(username) != user_id:
        profile.contacts[username] = user_id
        save_profile(profile_name, profile)
    return user_id


def _target(
    peer_or_text: str | None, text: str | None, group: str | None, needs_text: bool
) -> tuple[str, str]:
    """Sort out ``PEER TEXT`` vs ``--group G TEXT``; return ``(peer or group, text)``."""
    if group is not None:
        if needs_text:
            if peer_or_text is None or text is not None:
                raise typer.BadParameter("with --group give only TEXT")
            return group, peer_or_text
        if peer_or_text is not None:
            raise typer.BadParameter("give either PEER or --group, not both")
        return group, ""
    if peer_or_text is None:
        raise typer.BadParameter("missing PEER (a username) or --group GROUP_ID")
    if needs_text and text is None:
        raise typer.BadParameter("missing TEXT")
    return peer_or_text, text or ""


def _clock(envelope: Envelope) -> str:
    ts = envelope.get("ts")
    seconds = ts / 1000 if isinstance(ts, int | float) and not isinstance(ts, bool) else time.time()
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def _text_of(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("file"), str):
        name, size = body.get("name"), body.get("size")
        about = ", ".join(str(v) for v in (name, f"{size} bytes" if isinstance(size, int) else None,
                                            body.get("content_type")) if v)
        note = f"[file {body['file']}{f': {about}' if about else ''}]"
        text = body.get("text")
        return f"{text} {note}" if isinstance(text, str) and text else note
    if isinstance(body, dict) and isinstance(body.get("text"), str):
        return str(body["text"])
    return orjson.dumps(body).decode()


def learn_sender(client: ChatClient, profile: Profile, envelope: Envelope) -> None:
    """Look up the username of an envelope's unknown sender once, so lines show names, not ids."""
    sender = envelope.get("from")
    if isinstance(sender, str):
        learn_user(client, profile, sender)


def learn_user(client: ChatClient, profile: Profile, user_id: str | None) -> str:
    """The username of ``user_id`` (looked up once when unknown, kept in ``profile.contacts``), else the id."""
    if user_id is None or user_id == profile.user_id or user_id in profile.contacts.values():
        return profile.name_of(user_id)
    with suppress(ChatClientError):
        profile.contacts[str(client.user(user_id)["username"])] = user_id
    return profile.name_of(user_id)


def format_envelope(envelope: Envelope, profile: Profile) -> tuple[str, bool]:
    """One display line for an inbox envelope and whether it belongs on stderr."""
    kind = envelope.get("type")
    clock = _clock(envelope)
    if kind == "message":
        sender = profile.name_of(envelope.get("from"))
        group = envelope.get("group")
        where = f"[{group}] " if group else ""
        reply = envelope.get("reply_to")
        answering = f" (reply to {reply})" if reply else ""
        return f"[{clock}] {where}{sender}{answering}: {_text_of(envelope.get('body'))}", False
    if kind in ACTION_TYPES:
        sender = profile.name_of(envelope.get("from"))
        group = envelope.get("group")
        where = f"[{group}] " if group else ""
        target = envelope.get("target")
        if kind == "edit":
            what = f"edited {target}: {_text_of(envelope.get('body'))}"
        elif kind == "delete":
            what = f"deleted {target}"
        else:
            verb = "took back" if envelope.get("remove") else "reacted"
            what = f"{verb} {envelope.get('emoji')} on {target}"
        return f"[{clock}] * {where}{sender} {what}", False
    if kind == "receipt":
        ids = ", ".join(str(i) for i in envelope.get("ids") or [])
        by = profile.name_of(envelope.get("from"))
        return f"[{clock}] * {envelope.get('status')} by {by}: {ids}", False
    if kind == "event":
        rest = {k: v for k, v in envelope.items() if k not in ("type", "event")}
        return f"[{clock}] * event {envelope.get('event')}: {orjson.dumps(rest).decode()}", False
    if kind == "error":
        return f"[{clock}] ! error {envelope.get('code')}: {envelope.get('reason')}", True
    return f"[{clock}] ? {orjson.dumps(envelope).decode()}", False


_print_lock = threading.Lock()


def _show(line: str, err: bool = False) -> None:
    with _print_lock:
        typer.echo(line, err=err)
        (sys.stderr if err else sys.stdout).flush()


def _prompted(password: str | None) -> str:
    """The ``--password`` value (click prompts for it when absent, so it is set by now)."""
    if password is None:  # pragma: no cover - click prompted
        raise typer.BadParameter("missing password", param_hint="--password")
    return password


def _connection_line(up: bool) -> None:
    _show("* connected" if up else "* connection lost, reconnecting…", err=True)


# ----------------------------------------------------------------------------- commands


@app.command()
def register(
    username: Annotated[str, typer.Argument(help=r"Username: \[a-z0-9_.-]{3,32}.")],  # \[: not rich markup
    password: PasswordOpt = None,
    display_name: Annotated[str | None, typer.Option("--display-name", help="Name shown to others.")] = None,
    server: ServerOpt = None,
    ca_file: CaFileOpt = None,
) -> None:
    """Create an account (then run `login`)."""
    endpoint = resolve_endpoint(server, None, None, False, ca_file=ca_file)
    with _handle_errors(), make_client(endpoint) as client:
        user_id = client.register(username, _prompted(password), display_name)
    typer.echo(f"registered {username} ({user_id})")


@app.command()
def login(
    username: Annotated[str, typer.Argument(help="Your username.")],
    password: PasswordOpt = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Log in and save the tokens to the profile (mode 0600)."""
    endpoint = resolve_endpoint(server, None, None, False, ca_file=ca_file)
    path = profile_path(profile)
    with _handle_errors(), make_client(endpoint) as client:
        user_id = client.login(username, _prompted(password))
        tokens = client.tokens
        assert tokens is not None
        contacts: dict[str, str] = {}
        with suppress(NotLoggedInError):
            old = load_profile(profile)
            if old.server == endpoint.server and old.user_id == user_id:
                contacts = old.contacts
        save_profile(profile, Profile(endpoint.server, user_id, username, tokens.access_token,
                                      tokens.refresh_token, contacts))
    typer.echo(f"logged in as {username} ({user_id}); profile saved to {path}")


@app.command()
def logout(profile: ProfileOpt = "default") -> None:
    """Forget the saved profile."""
    path = profile_path(profile)
    try:
        path.unlink()
    except FileNotFoundError:
        _fail(f"not logged in (profile '{profile}')")
    typer.echo(f"logged out (removed {path})")


@app.command()
def send(
    peer: Annotated[
        str | None, typer.Argument(metavar="PEER", help="Recipient's username.", show_default=False)
    ] = None,
    text: Annotated[
        str | None, typer.Argument(metavar="TEXT", help="Message text.", show_default=False)
    ] = None,
    group: GroupOpt = None,
    reply_to: Annotated[str | None, typer.Option("--reply-to", metavar="MESSAGE_ID", show_default=False,
                                                 help="Answer this message (a server id of the same "
                                                      "conversation).")] = None,
    timeout: TimeoutOpt = 10.0,
    server: ServerOpt = None,
    mqtt_host: MqttHostOpt = None,
    mqtt_port: MqttPortOpt = None,
    ws: WsOpt = False,
    profile: ProfileOpt = "default",
    tls: TlsOpt = False,
    ca_file: CaFileOpt = None,
) -> None:
    """Send TEXT to user PEER (`send PEER TEXT`) or to a group (`send --group GROUP_ID TEXT`).

    Waits for the server's ack and prints `sent <server id>`.
    """
    target, message = _target(peer, text, group, needs_text=True)
    with _handle_errors(), _session(profile, server, mqtt_host, mqtt_port, ws, tls, ca_file) as (client, prof):
        to = None if group else _resolve_user(client, prof, profile, target)
        client.connect(timeout=timeout)
        ack = _send_and_wait(client, target, to, {"text": message}, timeout, reply_to=reply_to)
    typer.echo(f"sent {ack.get('id')}")


def _send_and_wait(client: ChatClient, target: str, to: str | None, body: dict[str, Any], timeout: float,
                   reply_to: str | None = None) -> Envelope:
    """Send ``body`` to user ``to`` (or group ``target`` when ``to`` is None), answering ``reply_to``, and wait
    for its ack; exit 1 with the server's error, or when no ack came in time."""
    client_id = (client.send_group(target, body, reply_to=reply_to) if to is None
                 else client.send(to, body, reply_to=reply_to))
    try:
        return client.wait_ack(client_id, timeout)
    except MessageRejectedError as exc:
        _fail(f"message refused: {exc.code}: {exc.reason}")
    except AckTimeoutError:
        _fail(f"no ack from the server within {timeout:g}s (message {client_id} may not have been sent)")


@app.command("send-file")
def send_file(
    peer: Annotated[
        str | None, typer.Argument(metavar="PEER", help="Recipient's username.", show_default=False)
    ] = None,
    path: Annotated[
        Path | None, typer.Argument(metavar="PATH", help="The file to send.", show_default=False)
    ] = None,
    text: Annotated[str | None, typer.Option("--text", help="A caption sent with it.")] = None,
    group: GroupOpt = None,
    timeout: TimeoutOpt = 10.0,
    server: ServerOpt = None,
    mqtt_host: MqttHostOpt = None,
    mqtt_port: MqttPortOpt = None,
    ws: WsOpt = False,
    profile: ProfileOpt = "default",
    tls: TlsOpt = False,
    ca_file: CaFileOpt = None,
) -> None:
    """Upload PATH and send it to user PEER (`send-file PEER PATH`) or to a group (`send-file --group GROUP_ID
    PATH`).

    Prints `sent <server id> (file <file id>)`; the recipients fetch it with `get-file`.
    """
    target, name = _target(peer, None if path is None else str(path), group, needs_text=True)
    source = Path(name)
    if not source.is_file():
        raise typer.BadParameter(f"{source} is not a file", param_hint="PATH")
    with _handle_errors(), _session(profile, server, mqtt_host, mqtt_port, ws, tls, ca_file) as (client, prof):
        to = None if group else _resolve_user(client, prof, profile, target)
        uploaded = client.upload_file(source)
        body: dict[str, Any] = {"file": uploaded["file_id"], "name": source.name[:255], "size": uploaded["size"],
                                "content_type": uploaded["content_type"]}
        if text:
            body["text"] = text
        client.connect(timeout=timeout)
        ack = _send_and_wait(client, target, to, body, timeout)
    typer.echo(f"sent {ack.get('id')} (file {uploaded['file_id']})")


@app.command("get-file")
def get_file(
    file_id: Annotated[str, typer.Argument(help=r"The file's id (from a message's \[file ...]).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", show_default=False,
                                                help="Where to write it (default: FILE_ID in this folder).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Fetch only what OUTPUT does not have yet.")] = False,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Download a file sent to you (or by you); prints `saved <path> (<n> bytes)`."""
    target = output or Path(file_id)
    offset = target.stat().st_size if resume and target.is_file() else 0
    with _handle_errors(), _session(profile, server, None, None, False, False, ca_file) as (client, _prof):
        written = client.download_file(file_id, target, offset=offset)
    typer.echo(f"saved {target} ({offset + written} bytes)")


def _act(what: str, act: Callable[[ChatClient], str], timeout: float, profile: str, server: str | None,
         mqtt_host: str | None, mqtt_port: int | None, ws: bool, tls: bool, ca_file: Path | None) -> Envelope:
    """Connect, make one message action (``act`` returns its client id) and wait for its ack; a refusal is
    one ``error: <what> refused: <code>: <reason>`` line and exit code 1."""
    with _handle_errors(), _session(profile, server, mqtt_host, mqtt_port, ws, tls, ca_file) as (client, _):
        client.connect(timeout=timeout)
        client_id = act(client)
        try:
            return client.wait_ack(client_id, timeout)
        except MessageRejectedError as exc:
            _fail(f"{what} refused: {exc.code}: {exc.reason}")
        except AckTimeoutError:
            _fail(f"no ack from the server within {timeout:g}s ({what} {client_id} may not have been made)")


@app.command()
def edit(
    target: TargetArg,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The new text.", show_default=False)],
    timeout: TimeoutOpt = 10.0,
    server: ServerOpt = None,
    mqtt_host: MqttHostOpt = None,
    mqtt_port: MqttPortOpt = None,
    ws: WsOpt = False,
    profile: ProfileOpt = "default",
    tls: TlsOpt = False,
    ca_file: CaFileOpt = None,
) -> None:
    """Give your message MESSAGE_ID the text TEXT (within the server's edit window, 48 h by default).

    Prints `edited <message id> (<server id of the edit>)`.
    """
    ack = _act("edit", lambda c: c.edit(target, {"text": text}), timeout, profile, server, mqtt_host, mqtt_port,
               ws, tls, ca_file)
    typer.echo(f"edited {target} ({ack.get('id')})")


@app.command()
def delete(
    target: TargetArg,
    for_me: Annotated[bool, typer.Option("--for-me", help="Hide it from your own history only (any message "
                                                          "you see); without: delete your message for "
                                                          "everyone.")] = False,
    timeout: TimeoutOpt = 10.0,
    server: ServerOpt = None,
    mqtt_host: MqttHostOpt = None,
    mqtt_port: MqttPortOpt = None,
    ws: WsOpt = False,
    profile: ProfileOpt = "default",
    tls: TlsOpt = False,
    ca_file: CaFileOpt = None,
) -> None:
    """Delete your message MESSAGE_ID for everyone, or with --for-me hide any message from your history.

    For everyone, its text leaves the server. Prints
    `deleted <message id> for everyone|for you (<server id of the delete>)`.
    """
    scope: Literal["everyone", "me"] = "me" if for_me else "everyone"
    ack = _act("delete", lambda c: c.delete(target, scope), timeout, profile, server, mqtt_host, mqtt_port,
               ws, tls, ca_file)
    typer.echo(f"deleted {target} {'for you' if for_me else 'for everyone'} ({ack.get('id')})")


@app.command()
def react(
    target: TargetArg,
    emoji: Annotated[str, typer.Argument(metavar="EMOJI", help="The reaction, e.g. 👍 (at most 32 characters).",
                                         show_default=False)],
    remove: Annotated[bool, typer.Option("--remove", help="Take the reaction back.")] = False,
    timeout: TimeoutOpt = 10.0,
    server: ServerOpt = None,
    mqtt_host: MqttHostOpt = None,
    mqtt_port: MqttPortOpt = None,
    ws: WsOpt = False,
    profile: ProfileOpt = "default",
    tls: TlsOpt = False,
    ca_file: CaFileOpt = None,
) -> None:
    """React to message MESSAGE_ID with EMOJI (or take it back with --remove).

    Prints `reacted <emoji> on <message id>` (`took back <emoji> on <message id>`).
    """
    _act("reaction", lambda c: c.react(target, emoji, remove), timeout, profile, server, mqtt_host, mqtt_port,
         ws, tls, ca_file)
    typer.echo(f"{'took back' if remove else 'reacted'} {emoji} on {target}")


@app.command()
def listen(
    count: Annotated[int | None, typer.Option("--count", "-n", min=1, help="Exit after N messages.")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.1,
                                                  help="Exit after this many seconds.")] = None,
    mark_read: Annotated[bool, typer.Option("--mark-read", help="Send read receipts for shown messages.")]
    = False,
    ids: Annotated[bool, typer.Option("--ids", help="End message and action lines with their server id "
                                                    "(for edit, delete, react, send --reply-to).")] = False,
    server: ServerOpt = None,
    mqtt_host: MqttHostOpt = None,
    mqtt_port: MqttPortOpt = None,
    ws: WsOpt = False,
    profile: ProfileOpt = "default",
    tls: TlsOpt = False,
    ca_file: CaFileOpt = None,
) -> None:
    """Print incoming messages, receipts and events until Ctrl-C.

    Messages print as `[HH:MM:SS] <from>: <text>` (`[HH:MM:SS] [<group>] <from>: <text>`
    for groups). With --count, exits 0 after N messages and 1 if --timeout passes first.
    """
    inbox: queue.Queue[Envelope] = queue.Queue()
    received = 0
    with _quiet_ctrl_c(), _handle_errors(), _session(profile, server, mqtt_host, mqtt_port, ws, tls, ca_file,
                                                     role="listen") as (client, prof):
        client.on_message = client.on_action = client.on_receipt = client.on_event = client.on_error = inbox.put
        client.connect(timeout=timeout or 10.0)
        client.on_connection_change = _connection_line
        _show(f"* listening as {prof.username} ({prof.user_id}); Ctrl-C to stop", err=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while count is None or received < count:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                envelope = inbox.get(timeout=wait)
            except queue.Empty:
                if client.fatal_error is not None:
                    raise client.fatal_error from None
                continue
            learn_sender(client, prof, envelope)
            line, err = format_envelope(envelope, prof)
            if ids and (envelope.get("type") == "message" or envelope.get("type") in ACTION_TYPES):
                line = f"{line}  #{envelope.get('id')}"
            _show(line, err)
            if envelope.get("type") == "message":
                received += 1
                if mark_read:
                    client.mark_read([str(envelope["id"])])
    if count is not None and received < count:
        _fail(f"timed out after {received} of {count} messages")


@app.command()
def chat(
    peer: Annotated[str | None, typer.Argument(metavar="PEER", help="Username to chat with.",
                                               show_default=False)] = None,
    group: GroupOpt = None,
    timeout: TimeoutOpt = 10.0,
    server: ServerOpt = None,
    mqtt_host: MqttHostOpt = None,
    mqtt_port: MqttPortOpt = None,
    ws: WsOpt = False,
    profile: ProfileOpt = "default",
    tls: TlsOpt = False,
    ca_file: CaFileOpt = None,
) -> None:
    """Interactive chat with PEER (or --group): prints incoming messages, sends each typed line.

    Messages from the peer are marked read as they are shown. End with Ctrl-D, /quit or Ctrl-C.
    """
    target, _ = _target(peer, None, group, needs_text=False)
    sent: list[str] = []
    with _quiet_ctrl_c(), _handle_errors(), _session(profile, server, mqtt_host, mqtt_port, ws, tls, ca_file,
                                                     role="chat") as (
            client, prof):
        peer_id = None if group else _resolve_user(client, prof, profile, target)

        def shown(envelope: Envelope) -> None:
            learn_sender(client, prof, envelope)
            line, err = format_envelope(envelope, prof)
            _show(line, err)
            if envelope.get("type") == "message" and (
                (group is not None and envelope.get("group") == group)
                or (peer_id is not None and envelope.get("from") == peer_id and not envelope.get("group"))
            ):
                client.mark_read([str(envelope["id"])])

        client.on_message = client.on_action = client.on_receipt = client.on_event = client.on_error = shown
        client.connect(timeout=timeout)
        client.on_connection_change = _connection_line
        _show(f"* chatting with {target} as {prof.username}; type a line and press Enter, Ctrl-D to quit",
              err=True)
        for raw in sys.stdin:
            line = raw.rstrip("\r\n")
            if line.strip() == "/quit":
                break
            if not line.strip():
                continue
            body = {"text": line}
            if peer_id is None:
                sent.append(client.send_group(target, body))
            else:
                sent.append(client.send(peer_id, body))
        unacked = 0
        deadline = time.monotonic() + timeout
        for client_id in sent:
            try:
                client.wait_ack(client_id, max(0.1, deadline - time.monotonic()))
            except MessageRejectedError:
                unacked += 1  # already shown by the error handler
            except AckTimeoutError:
                unacked += 1
        if unacked:
            _fail(f"{unacked} of {len(sent)} messages were not acknowledged")


# ----------------------------------------------------------------------------- contacts, blocks, search, ...


def _when(ms: int | None) -> str:
    """A time in ms as local ``YYYY-MM-DD HH:MM``; ``never`` for None."""
    return "never" if ms is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def _lines(lines: list[str], none: str) -> None:
    """Print ``lines``, or ``none`` when there are none."""
    typer.echo("\n".join(lines) if lines else none)


@contextmanager
def _missing(message: str) -> Iterator[None]:
    """The server's 404 as ``error: <message>`` (exit code 1)."""
    try:
        yield
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        _fail(message)


UsernameArg = Annotated[str, typer.Argument(metavar="USERNAME", help="The user's username.", show_default=False)]

contacts_app = typer.Typer(help="Your contact list on the server: list, add, remove; sync an address book.",
                           no_args_is_help=True)


@contacts_app.command("list")
def contacts_list(server: ServerOpt = None, profile: ProfileOpt = "default", ca_file: CaFileOpt = None) -> None:
    """Print your contacts, oldest first: `<username> (<user id>) added <date>`."""
    with _rest(profile, server, ca_file) as (client, prof):
        contacts = client.contact_list()
        lines = [f"{learn_user(client, prof, c.user_id)} ({c.user_id}) added {_when(c.added_at)}" for c in contacts]
    _lines(lines, "no contacts")


@contacts_app.command("add")
def contacts_add(username: UsernameArg, server: ServerOpt = None, profile: ProfileOpt = "default",
                 ca_file: CaFileOpt = None) -> None:
    """Put USERNAME on your contact list (two users on each other's lists see each other's presence)."""
    with _rest(profile, server, ca_file) as (client, prof):
        client.add_contact(_resolve_user(client, prof, profile, username))
    typer.echo(f"added {username} to your contacts")


@contacts_app.command("remove")
def contacts_remove(username: UsernameArg, server: ServerOpt = None, profile: ProfileOpt = "default",
                    ca_file: CaFileOpt = None) -> None:
    """Take USERNAME off your contact list."""
    with _rest(profile, server, ca_file) as (client, prof):
        user_id = _resolve_user(client, prof, profile, username)
        with _missing(f"{username} is not on your contact list"):
            client.remove_contact(user_id)
    typer.echo(f"removed {username} from your contacts")


@contacts_app.command("sync")
def contacts_sync(
    usernames: Annotated[list[str] | None, typer.Argument(metavar="[USERNAME]...", help="Usernames to look up.",
                                                          show_default=False)] = None,
    phones: Annotated[list[str] | None, typer.Option("--phone", metavar="E164", help="A phone number to look up "
                                                     "(+ and 7-15 digits; repeat it).", show_default=False)] = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Find which of an address book's usernames and phone numbers are users (adds no contact).

    Prints `<username or phone> -> <user id>` for each one found, then `not users: ...`.
    """
    names, numbers = usernames or [], phones or []
    if not names and not numbers:
        raise typer.BadParameter("give a USERNAME or a --phone")
    with _rest(profile, server, ca_file) as (client, prof):
        found = client.sync_contacts(names, numbers)
        prof.contacts.update(found.registered)
        save_profile(profile, prof)
    lines = [f"{key} -> {found.registered.get(key) or found.phones.get(key)}" for key in [*names, *numbers]
             if key in found.registered or key in found.phones]
    missing = [key for key in [*names, *numbers] if key not in found.registered and key not in found.phones]
    if missing:
        lines.append(f"not users: {', '.join(missing)}")
    typer.echo("\n".join(lines))


@app.command()
def block(username: UsernameArg, server: ServerOpt = None, profile: ProfileOpt = "default",
          ca_file: CaFileOpt = None) -> None:
    """Block USERNAME: their messages to you are refused, and you get none of theirs in groups."""
    with _rest(profile, server, ca_file) as (client, prof):
        client.block(_resolve_user(client, prof, profile, username))
    typer.echo(f"blocked {username}")


@app.command()
def unblock(username: UsernameArg, server: ServerOpt = None, profile: ProfileOpt = "default",
            ca_file: CaFileOpt = None) -> None:
    """Lift your block of USERNAME (for what they send from now on)."""
    with _rest(profile, server, ca_file) as (client, prof):
        user_id = _resolve_user(client, prof, profile, username)
        with _missing(f"{username} is not blocked"):
            client.unblock(user_id)
    typer.echo(f"unblocked {username}")


@app.command()
def blocks(server: ServerOpt = None, profile: ProfileOpt = "default", ca_file: CaFileOpt = None) -> None:
    """Print whom you block, oldest first: `<username> (<user id>)`."""
    with _rest(profile, server, ca_file) as (client, prof):
        lines = [f"{learn_user(client, prof, uid)} ({uid})" for uid in client.blocked()]
    _lines(lines, "nobody blocked")


def _conversation(client: ChatClient, prof: Profile, profile: str, peer: str | None, group: str | None) -> str:
    """The conversation id of ``--with USERNAME`` or ``--group GROUP_ID`` (one at most; None: neither)."""
    if peer is not None and group is not None:
        raise typer.BadParameter("give either --with or --group, not both")
    return group if group is not None else _resolve_user(client, prof, profile, peer) if peer is not None else ""


def _message_line(client: ChatClient, prof: Profile, m: Envelope) -> str:
    """A history message as `[YYYY-MM-DD HH:MM] [<group>] <from>: <text>  #<id>`."""
    where = f"[{m['group']}] " if m.get("group") else ""
    edited = " (edited)" if m.get("edited_at") else ""
    return (f"[{_when(m.get('ts'))}] {where}{learn_user(client, prof, m.get('from'))}: "
            f"{_text_of(m.get('body'))}{edited}  #{m.get('id')}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(metavar="QUERY", help="Words the text must hold (all of them, any case).",
                                         show_default=False)],
    peer: Annotated[str | None, typer.Option("--with", metavar="USERNAME", help="Only your conversation with "
                                             "this user.", show_default=False)] = None,
    group: Annotated[str | None, typer.Option("--group", "-g", help="Only this group's conversation.",
                                              show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100, help="Most messages to show.")] = 20,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Search the texts of your conversations; prints the messages found, newest first:
    `[YYYY-MM-DD HH:MM] <from>: <text>  #<message id>`."""
    with _rest(profile, server, ca_file) as (client, prof):
        conversation = _conversation(client, prof, profile, peer, group) or None
        lines = [_message_line(client, prof, m) for m in client.search(query, conversation, limit)]
    _lines(lines, "no messages found")


@app.command()
def conversations(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100, help="Most conversations to show.")] = 20,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Print your conversations, newest activity first:
    `<username or [group name]> (<id>): <unread> unread[, muted]: <from>: <last text>`."""
    with _rest(profile, server, ca_file) as (client, prof):
        lines = []
        for c in client.conversations(limit=limit).conversations:
            name = f"[{c.group.name}]" if c.group is not None else learn_user(client, prof, c.peer)
            last = c.last_message
            text = "(deleted)" if last.deleted else _text_of(last.body)
            muted = ", muted" if c.muted else ""
            lines.append(f"{name} ({c.id}): {c.unread} unread{muted}: {learn_user(client, prof, last.sender)}: "
                         f"{text}  [{_when(last.ts)}]")
    _lines(lines, "no conversations")


@app.command("read")
def read_conversation(
    peer: Annotated[str | None, typer.Argument(metavar="PEER", help="The username of a 1:1 conversation.",
                                               show_default=False)] = None,
    group: Annotated[str | None, typer.Option("--group", "-g", help="A group's conversation instead.",
                                              show_default=False)] = None,
    up_to: Annotated[str | None, typer.Option("--up-to", metavar="MESSAGE_ID", help="Read up to this message "
                                              "(default: the newest).", show_default=False)] = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Mark a conversation read (the senders get a `read` receipt); prints `read <conversation> up to <id>`."""
    if (peer is None) == (group is None):
        raise typer.BadParameter("give PEER or --group GROUP_ID")
    with _rest(profile, server, ca_file) as (client, prof):
        conversation = _conversation(client, prof, profile, peer, group)
        if up_to is None:
            newest = client.history(conversation, limit=1)["messages"]
            if not newest:
                _fail("no messages in this conversation")
            up_to = str(newest[0]["id"])
        client.mark_conversation_read(conversation, up_to)
    typer.echo(f"read {peer or group} up to {up_to}")


sessions_app = typer.Typer(help="Your devices (each MQTT client id you connected with): list, sign out.",
                           no_args_is_help=True)


@sessions_app.command("list")
def sessions_list(server: ServerOpt = None, profile: ProfileOpt = "default", ca_file: CaFileOpt = None) -> None:
    """Print your devices, oldest first: `<client id>  online|offline  first <date>  last <date>`."""
    with _rest(profile, server, ca_file) as (client, prof):
        found = client.sessions()
        mine = {f"cli-{prof.device}-{role}" for role in ("send", "listen", "chat")} if prof.device else set()
    lines = [f"{s.client_id}  {'online' if s.online else 'offline'}  first {_when(s.first_seen)}  "
             f"last {_when(s.last_seen)}{'  (this profile)' if s.client_id in mine else ''}" for s in found]
    _lines(lines, "no devices")


@sessions_app.command("sign-out")
def sessions_sign_out(
    client_id: Annotated[str, typer.Argument(metavar="CLIENT_ID", help="The device's client id (as `sessions "
                                             "list` prints it).", show_default=False)],
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Sign one of your devices out: it is forgotten with what it had pending, its connection closes."""
    with _rest(profile, server, ca_file) as (client, _prof), _missing(f"no device {client_id} of yours"):
        client.sign_out_session(client_id)
    typer.echo(f"signed out {client_id}")


@app.command()
def presence(
    usernames: Annotated[list[str], typer.Argument(metavar="USERNAME...", help="The users (at most 100).",
                                                   show_default=False)],
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Print each user's presence: `<username>: online|away|offline since <date>` (`, never seen`), or
    `not shown` (only mutual contacts see each other's)."""
    usernames = list(dict.fromkeys(usernames))  # the server answers each user once
    with _rest(profile, server, ca_file) as (client, prof):
        ids = [_resolve_user(client, prof, profile, name) for name in usernames]
        shown = client.presence_of(ids)
    lines = [f"{name}: not shown" if p.state is None else f"{name}: {p.state}, never seen" if p.last_seen is None
             else f"{name}: {p.state} since {_when(p.last_seen)}" for name, p in zip(usernames, shown, strict=True)]
    typer.echo("\n".join(lines))


app.add_typer(contacts_app, name="contacts")
app.add_typer(sessions_app, name="sessions")


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{what} must be a JSON object")
    return value


@contextmanager
def _rest(profile: str, server: str | None, ca_file: Path | None) -> Iterator[tuple[ChatClient, Profile]]:
    """A REST-only session of ``profile`` (no MQTT), SDK errors as one ``error:`` line and exit code 1."""
    with _handle_errors(), _session(profile, server, None, None, False, False, ca_file) as session:
        yield session


def _print_answer(profile: str, server: str | None, ca_file: Path | None,
                  call: Callable[[ChatClient], dict[str, Any]]) -> dict[str, Any]:
    """``call`` on a REST session of ``profile``; prints its answer as JSON and returns it (exit 1 on an error)."""
    with _rest(profile, server, ca_file) as (client, _prof):
        answer = call(client)
    typer.echo(orjson.dumps(answer).decode())
    return answer


def device_command(
    device_id: Annotated[str, typer.Argument(help="The device's id (one of yours).")],
    name: Annotated[str, typer.Argument(help="The command's name.")],
    params: Annotated[str, typer.Option("--params", help="The command's params, a JSON object.")] = "{}",
    timeout_s: Annotated[int, typer.Option("--timeout", min=1, max=300, help="Seconds to wait for the answer.")] = 30,
    persistent: Annotated[bool, typer.Option("--persistent", help="Queue it until the device connects.")] = False,
    expires_in_s: Annotated[int | None, typer.Option("--expires-in", min=1,
                                                     help="Seconds a persistent command waits.")] = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Send a command to one of your devices and print its answer as JSON (exit 1 when the device is offline,
    does not answer in time, or fails the command)."""
    body = _json_object(params, "--params")
    answer = _print_answer(profile, server, ca_file, lambda client: client.send_device_command(
        device_id, name, body, timeout_s=timeout_s, persistent=persistent, expires_in_s=expires_in_s))
    if answer.get("status") == "failed":
        raise typer.Exit(1)


def device_shadow(
    device_id: Annotated[str, typer.Argument(help="The device's id (one of yours).")],
    desired: Annotated[str | None, typer.Option("--set", help="Merge this JSON object into the desired state "
                                                              "(null deletes a key).")] = None,
    version: Annotated[int | None, typer.Option("--version", min=0, help="Only if the shadow is at this version.")]
    = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Print one of your devices' shadow as JSON, or change its desired state with `--set`."""
    change = None if desired is None else _json_object(desired, "--set")
    _print_answer(profile, server, ca_file, lambda client: client.device_shadow(device_id) if change is None
                  else client.update_device_shadow(device_id, change, version))


jobs_app = typer.Typer(help="Jobs across your devices: create, show, cancel (each prints the job as JSON).",
                       no_args_is_help=True)


@jobs_app.command("create")
def job_create(
    document: Annotated[str, typer.Argument(help="The job's document, a JSON object each device gets.")],
    devices: Annotated[list[str] | None, typer.Option("--device", help="A device of yours (repeat it); "
                                                                        "without any, all your devices.")] = None,
    rollout_per_minute: Annotated[int | None, typer.Option("--rollout-per-minute", min=1, max=100_000,
                                                           help="Send it to this many online devices a minute.")]
    = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Start a job on some or all of your devices and print `{"job_id": ...}`."""
    body = _json_object(document, "DOCUMENT")
    _print_answer(profile, server, ca_file,
                  lambda client: client.create_job(body, devices or None, rollout_per_minute=rollout_per_minute))


@jobs_app.command("show")
def job_show(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Print a job of yours with its devices' status counts and rows."""
    _print_answer(profile, server, ca_file, lambda client: client.job(job_id))


@jobs_app.command("cancel")
def job_cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    ca_file: CaFileOpt = None,
) -> None:
    """Cancel a job of yours: devices that had not finished it are not sent it again; print the job."""
    _print_answer(profile, server, ca_file, lambda client: client.cancel_job(job_id))


def main() -> None:  # pragma: no cover - for `python -m chatmq.devices.cli`
    """Run the client app on its own."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
