"""``FakePushServer``: a local HTTP server that plays Google's OAuth token endpoint, FCM's HTTP v1 send
endpoint and a push webhook, for driving the real firebase-admin (and httpx) against it.

* ``POST /token``: the OAuth 2.0 JWT-bearer grant. The assertion must be an RS256 JWT signed with
  the key of the service account ``service_account()`` wrote (checked with the public key), from
  its ``client_email`` and addressed to Google's token endpoint (as google-auth addresses it);
  the answer is ``{"access_token", "expires_in": 3600, "token_type"}``.
* ``POST /v1/projects/{project}/messages:send``: needs ``Authorization: Bearer <an issued token>``
  (else 401); answers ``{"name": "projects/<p>/messages/<n>"}`` or a scripted Google error.
* ``POST /webhook``: a push webhook; answers 200 or a scripted status.

Every send (FCM or webhook) is recorded as a ``Sent`` (path, headers, decoded JSON, status
answered). Answers are scripted per token: ``script(token, *answers)`` queues answers for the
next sends to that token; while ``failing`` is set every send gets it; tokens named
``unregistered-…`` / ``invalid-…`` / ``mismatch-…`` always get FCM's UNREGISTERED,
INVALID_ARGUMENT (about the token) and SENDER_ID_MISMATCH errors; anything else gets 200.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import urllib.parse
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PROJECT = "chatmq-test"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
"""The ``aud`` google-auth puts in a service account's assertion, whatever its ``token_uri``."""
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, extra headers, JSON body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


def google_error(status: int, state: str, message: str, fcm_code: str | None = None,
                 extra: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> Answer:
    """A Google API error as FCM sends it, with an ``FcmError`` detail when ``fcm_code`` is given."""
    details = [{"@type": _FCM_ERROR, "errorCode": fcm_code}] if fcm_code else []
    return Answer(status, headers or {},
                  {"error": {"code": status, "message": message, "status": state, "details": details + (extra or [])}})


def unregistered() -> Answer:
    return google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")


def invalid_token() -> Answer:
    violation = {"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}
    return google_error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
                        "INVALID_ARGUMENT", [violation])


def bad_message() -> Answer:
    """INVALID_ARGUMENT about the message itself, not the token."""
    return google_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.data[0].value'", "INVALID_ARGUMENT")


def sender_mismatch() -> Answer:
    return google_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")


def quota_exceeded(retry_after: int | None = None) -> Answer:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED", headers=headers)


def unavailable(retry_after: int | None = None) -> Answer:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return google_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE", headers=headers)


def internal() -> Answer:
    return google_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL")


_BY_NAME: dict[str, Callable[[], Answer]] = {
    "unregistered-": unregistered, "invalid-": invalid_token, "mismatch-": sender_mismatch,
}


@dataclass(frozen=True, slots=True)
class Sent:
    """One send the server got: FCM's (``path`` under ``/v1/``) or the webhook's."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    raw: bytes = b""

    @property
    def token(self) -> str:
        return str(self.body["message"]["token"] if "message" in self.body else self.body["token"])

    @property
    def data(self) -> dict[str, str]:
        return dict(self.body["message"]["data"] if "message" in self.body else self.body["data"])


class FakePushServer:
    """Start with ``with FakePushServer() as fake:``; ``url`` is its base URL."""

    def __init__(self, project: str = PROJECT) -> None:
        self.project = project
        self.sent: list[Sent] = []
        self.token_requests = 0
        self.failing: Answer | None = None
        self._scripts: dict[str, deque[Answer]] = defaultdict(deque)
        self._issued: set[str] = set()
        self._counter = itertools.count(1)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._cond = threading.Condition()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="fake-push", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def client_email(self) -> str:
        return f"push@{self.project}.iam.gserviceaccount.com"

    @property
    def fcm_url(self) -> str:
        """The ``fcm_url`` setting that points firebase-admin here."""
        return self.url + "/v1/projects/{0}/messages:send"

    @property
    def webhook_url(self) -> str:
        return self.url + "/webhook"

    def __enter__(self) -> FakePushServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def service_account(self, directory: Path) -> Path:
        """Write a service-account JSON (this server's RSA key, ``token_uri`` here) into ``directory``."""
        pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
        info = {
            "type": "service_account", "project_id": self.project, "private_key_id": "fake-key-1",
            "private_key": pem, "client_email": self.client_email,
            "client_id": "100000000000000000001", "token_uri": f"{self.url}/token",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        }
        path = directory / "service-account.json"
        path.write_text(json.dumps(info))
        return path

    def reset(self) -> None:
        """Forget what was sent and scripted (between tests sharing one server)."""
        with self._cond:
            self.sent.clear()
            self._scripts.clear()
            self.failing = None

    def script(self, token: str, *answers: Answer) -> None:
        """The next sends to ``token`` get ``answers``, in order; then the default."""
        with self._cond:
            self._scripts[token].extend(answers)

    def to(self, token: str) -> list[Sent]:
        with self._cond:
            return [s for s in self.sent if s.token == token]

    def wait_for(self, predicate: Callable[[list[Sent]], bool], timeout: float = 15.0) -> list[Sent]:
        """Wait until ``predicate(sent)`` holds; returns ``sent`` (AssertionError after ``timeout``)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(self.sent), timeout)
            assert ok, f"the fake push server did not see what was expected; it got {self.sent}"
            return list(self.sent)

    async def until(self, predicate: Callable[[list[Sent]], bool], timeout: float = 15.0) -> list[Sent]:
        """``wait_for`` from a coroutine (in a thread: the event loop keeps running)."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    # --- the server ---------------------------------------------------------------------
    def _answer_for(self, token: str) -> Answer:
        with self._cond:
            if self._scripts[token]:
                return self._scripts[token].popleft()
            if self.failing is not None:
                return self.failing
        for prefix, make in _BY_NAME.items():
            if token.startswith(prefix):
                return make()
        return Answer(200, {}, {"name": f"projects/{self.project}/messages/{next(self._counter)}"})

    def _oauth(self, form: dict[str, list[str]]) -> Answer:
        public = self._key.public_key()
        try:
            assert form.get("grant_type") == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            claims = jwt.decode(form["assertion"][0], public, algorithms=["RS256"], audience=GOOGLE_TOKEN_AUDIENCE)
            assert claims["iss"] == self.client_email
        except (AssertionError, KeyError, jwt.PyJWTError) as exc:
            return Answer(400, {}, {"error": "invalid_grant", "error_description": str(exc)})
        token = f"fake-access-{next(self._counter)}"
        with self._cond:
            self.token_requests += 1
            self._issued.add(token)
        return Answer(200, {}, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def _send(self, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        body = json.loads(raw)
        fcm = path.startswith("/v1/")
        if fcm and path != f"/v1/projects/{self.project}/messages:send":
            answer = google_error(404, "NOT_FOUND", f"no project at {path}")
        elif fcm and headers.get("authorization", "").removeprefix("Bearer ") not in self._issued:
            answer = google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        else:
            answer = self._answer_for(body["message"]["token"] if fcm else body["token"])
        with self._cond:
            self.sent.append(Sent(path, headers, body, answer.status, raw))
            self._cond.notify_all()
        return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/token":
                    answer = fake._oauth(urllib.parse.parse_qs(raw.decode()))
                elif self.path.startswith("/v1/") or self.path == "/webhook":
                    answer = fake._send(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                else:
                    answer = Answer(404, {}, {"error": "no such path"})
                payload = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler
