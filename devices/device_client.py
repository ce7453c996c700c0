"""``DeviceClient``: an IoT device's MQTT session, publishing telemetry readings.

Contracts
---------
- Credentials come from ``POST /api/v1/devices`` (``ChatClient.create_device``):
  ``username`` = device id, ``password`` = secret.
- ``connect`` opens the session, subscribes QoS 1 to ``devices/{id}/inbox`` (where the
  server answers a bad reading with an ``error`` envelope) and returns after the SUBACK.
  It raises ``NotAuthorizedError`` when the credentials are refused (unknown, wrong or
  revoked device), ``SubscribeDeniedError`` when the inbox subscription is refused,
  ``ConnectTimeoutError`` when the broker does not answer and ``ServerUnreachableError``
  when it cannot be reached. paho reconnects by itself afterwards (1–30 s backoff) and
  subscribes again. Like ``ChatClient`` it speaks MQTT 5 unless ``mqtt_version=4``, and falls back to
  MQTT 3.1.1 for good when the broker refuses MQTT 5 at the first connect (``mqtt_version`` says which).
- ``publish`` sends one reading (a JSON object) QoS 1 to ``devices/{id}/telemetry``;
  while disconnected paho queues it and sends it after reconnecting. With ``timeout`` it waits for the
  broker's PUBACK; over MQTT 5 a PUBACK that refuses the reading raises ``MessageRejectedError`` with its
  ``reason_code`` and the chatmq ``code`` and ``reason`` (the ``error`` envelope comes to the inbox too).
- ``error`` envelopes are kept in ``errors`` (``wait_errors`` blocks for them) and handed
  to ``on_error``, which runs in paho's thread; exceptions it raises are logged.
- TLS: ``tls=True`` speaks MQTT over TLS, trusting the system's CAs or only ``ca_file``'s. With
  ``cert_file``/``key_file`` the device presents a client certificate; where the server trusts its CA
  (``tls_client_ca``) and its CN is the device id, ``secret`` may be ``None``.
- Commands: ``on_command(name, params)`` runs each ``command`` from the inbox on one worker thread (in
  arrival order); what it returns (a JSON object, or None) becomes the ``command_result``'s ``result``
  with ``ok: true`` (any other value as ``{"value": ...}``), an exception it raises ``ok: false`` with
  the exception's text as ``error``. A command
  id seen before is not run again: its first answer is sent again (redelivery carries the same id), so a
  command runs at most once per id while the client lives (the last 1024 ids are kept).
- Jobs: ``on_job(job_id, document)`` runs each ``job`` on the same worker thread, once per id; it may call
  ``job_update(job_id, "in_progress", progress)`` while it works; what it returns (a JSON object, or None)
  becomes ``job_update`` ``succeeded`` with those ``details``, an exception ``failed`` with ``{"error": text}``.
- Shadow (``shadow``): ``report(state, version=None)`` publishes ``shadow_report``; ``get(timeout)`` asks
  with ``shadow_get`` and returns the ``shadow`` document; ``on_delta(state, version)`` is called (in
  paho's thread) with every ``shadow_delta``, which are also kept in ``deltas``.
- The secret is never logged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from chatmq.core.mqtt_topics import device_inbox_topic, device_outbox_topic, telemetry_topic
from chatmq.devices.sdk import (
    _AUTH_REFUSED,
    _UNSUPPORTED_PROTOCOL,
    ChatClientError,
    ChatTimeoutError,
    ConnectError,
    ConnectTimeoutError,
    Envelope,
    MessageRejectedError,
    NotAuthorizedError,
    PublishRefusal,
    ServerUnreachableError,
    SubscribeDeniedError,
    Transport,
    VersionProbe,
    mqtt_client,
    open_probing,
    publish_refusal,
    release_sockets,
    tls_context,
)

log = logging.getLogger(__name__)


CommandHandler = Callable[[str, dict[str, Any]], "dict[str, Any] | None"]
_REMEMBERED = 1024  # command ids (with their answers) a client keeps to answer a redelivery without rerunning


class DeviceShadow:
    """The device side of its shadow (see ``DeviceClient``'s module docstring)."""

    def __init__(self, client: DeviceClient) -> None:
        self._client = client
        self.on_delta: Callable[[dict[str, Any], int], None] | None = None
        self.deltas: list[Envelope] = []
        self._documents: list[Envelope] = []

    def report(self, state: dict[str, Any], version: int | None = None) -> None:
        """Merge ``state`` into the reported state (``None`` deletes a key); with ``version``, only if the
        shadow is at that version (otherwise an ``error`` with code ``conflict`` arrives)."""
        envelope: dict[str, Any] = {"type": "shadow_report", "state": state}
        if version is not None:
            envelope["version"] = version
        self._client._outbox(envelope)

    def get(self, timeout: float = 10.0) -> Envelope:
        """The whole shadow (``desired``, ``reported``, ``delta``, ``version``); ``ChatTimeoutError`` when
        no answer comes within ``timeout``."""
        cond = self._client._cond
        with cond:
            seen = len(self._documents)
        self._client._outbox({"type": "shadow_get"})
        with cond:
            if not cond.wait_for(lambda: len(self._documents) > seen, timeout):
                raise ChatTimeoutError(f"no shadow within {timeout:g}s")
            return self._documents[seen]

    def wait_delta(self, n: int, timeout: float) -> list[Envelope]:
        """Block until at least ``n`` deltas arrived; ``ChatTimeoutError`` otherwise."""
        with self._client._cond:
            if not self._client._cond.wait_for(lambda: len(self.deltas) >= n, timeout):
                raise ChatTimeoutError(f"{len(self.deltas)} of {n} shadow deltas arrived within {timeout:g}s")
            return list(self.deltas)

    def _received(self, envelope: Envelope) -> None:
        with self._client._cond:
            if envelope.get("type") == "shadow":
                self._documents.append(envelope)
            else:
                self.deltas.append(envelope)
            self._client._cond.notify_all()
        if envelope.get("type") == "shadow_delta" and self.on_delta is not None:
            try:
                self.on_delta(dict(envelope.get("state") or {}), int(envelope.get("version") or 0))
            except Exception:
                log.exception("device %s: error in on_delta", self._client.device_id)


class DeviceClient:
    """One device's MQTT session (see the module docstring for the contract)."""

    def __init__(
        self,
        mqtt_host: str,
        mqtt_port: int,
        device_id: str,
        secret: str | None,
        *,
        transport: Transport = "tcp",
        ws_path: str = "/mqtt",
        client_id: str | None = None,
        keepalive: int = 30,
        tls: bool = False,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        mqtt_version: int = 5,
    ) -> None:
        self._probe = VersionProbe(mqtt_version)
        self.device_id = device_id
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.on_error: Callable[[Envelope], None] | None = None
        self.errors: list[Envelope] = []
        self.connected = False
        self.on_command: CommandHandler | None = None
        self.on_job: CommandHandler | None = None
        self.shadow = DeviceShadow(self)
        self._answers: dict[str, dict[str, Any]] = {}  # command id -> its command_result, newest last
        self._commands: queue.SimpleQueue[Envelope | None] = queue.SimpleQueue()
        self._runner: threading.Thread | None = None
        self._keepalive = keepalive
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._connect_error: ConnectError | None = None
        self._sub_mid: int | None = None
        self._started = False
        #: what each reading's PUBACK said, by packet id (``None``: accepted); ``publish`` reads its own
        self._outcomes: dict[int, PublishRefusal | None] = {}
        self._client_id = client_id or f"chatmq-dev-{uuid.uuid4().hex[:16]}"
        self._transport: Transport = transport
        self._ws_path = ws_path
        self._tls = tls_context(ca_file, cert_file, key_file) if tls else None
        self._secret = secret
        self.mqtt = self._make_mqtt()

    @property
    def mqtt_version(self) -> int:
        """5: MQTT 5 (until a broker refuses it: then 4); 4: MQTT 3.1.1."""
        return self._probe.version

    def _make_mqtt(self) -> mqtt.Client:
        """A paho client with this device's options and callbacks, in ``mqtt_version``."""
        client = mqtt_client(self._client_id, self._transport, self.mqtt_version, self._ws_path, self._tls)
        client.username_pw_set(self.device_id, self._secret)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def telemetry_topic(self) -> str:
        return telemetry_topic(self.device_id)

    @property
    def inbox_topic(self) -> str:
        return device_inbox_topic(self.device_id)

    @property
    def outbox_topic(self) -> str:
        return device_outbox_topic(self.device_id)

    def connect(self, timeout: float = 10.0) -> None:
        """Open the session and subscribe to the device's inbox; errors: see the module docstring."""
        if self._started:
            return
        self._started = True
        if self._runner is None:
            self._runner = threading.Thread(target=self._run_commands, name=f"commands-{self.device_id}",
                                            daemon=True)
            self._runner.start()

        def fallback() -> mqtt.Client:  # a broker without MQTT 5: the same again with 3.1.1
            self.mqtt = self._make_mqtt()
            self._connect_error = None
            return self.mqtt

        try:
            open_probing(self.mqtt, self._probe, fallback, self.mqtt_host, self.mqtt_port, self._keepalive,
                         self._ready, timeout, self._stop_loop)
        except ServerUnreachableError:
            self._started = False
            raise
        except ConnectTimeoutError:
            self.close()
            raise
        if self._connect_error is not None:
            error = self._connect_error
            self.close()
            raise error

    def publish(self, reading: dict[str, Any], timeout: float | None = None) -> None:
        """Publish one reading QoS 1; with ``timeout``, wait for the broker's PUBACK (``ChatTimeoutError``),
        and over MQTT 5 raise ``MessageRejectedError`` when it refuses the reading."""
        info = self.mqtt.publish(self.telemetry_topic, orjson.dumps(reading), qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise ChatClientError(f"publish failed: {mqtt.error_string(info.rc)}")
        if timeout is not None:
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                raise ChatTimeoutError(f"reading not acknowledged: {exc}") from exc
            if not info.is_published():
                raise ChatTimeoutError(f"reading not acknowledged within {timeout:g}s")
            # paho calls on_publish before it marks the reading published: this is its PUBACK's outcome
            refusal = self._outcomes.pop(info.mid, None)
            if refusal is not None:
                raise MessageRejectedError.refused(refusal)

    def wait_errors(self, n: int, timeout: float) -> list[Envelope]:
        """Block until at least ``n`` errors arrived; ``ChatTimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.errors) >= n, max(0.0, deadline - time.monotonic())):
                raise ChatTimeoutError(f"{len(self.errors)} of {n} errors arrived within {timeout:g}s")
            return list(self.errors)

    def close(self) -> None:
        """Disconnect and stop paho's thread; calling it twice is harmless."""
        if not self._started:
            return
        self._started = False
        self._stop_loop()
        self.connected = False
        if self._runner is not None:
            self._commands.put(None)
            self._runner.join(5.0)
            self._runner = None

    def _stop_loop(self) -> None:
        try:
            self.mqtt.disconnect()
        except Exception:  # pragma: no cover - paho may refuse when never connected
            log.debug("disconnect failed", exc_info=True)
        self.mqtt.loop_stop()
        release_sockets(self.mqtt)

    def _outbox(self, envelope: dict[str, Any]) -> None:
        """Publish ``envelope`` QoS 1 on the device's outbox (queued by paho while disconnected)."""
        info = self.mqtt.publish(self.outbox_topic, orjson.dumps(envelope), qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise ChatClientError(f"publish failed: {mqtt.error_string(info.rc)}")

    def _run_commands(self) -> None:
        """The command worker: runs ``on_command`` for each command, once per id, and answers."""
        while (command := self._commands.get()) is not None:
            command_id = f"{command.get('type')}:{command.get('id')}"
            answer = self._answers.get(command_id)
            if answer is None:
                answer = self._execute_job(command) if command.get("type") == "job" else self._execute(command)
                self._answers[command_id] = answer
                while len(self._answers) > _REMEMBERED:
                    del self._answers[next(iter(self._answers))]
            try:
                self._outbox(answer)
            except ChatClientError:
                log.warning("device %s: could not answer command %s", self.device_id, command_id)

    def job_update(self, job_id: str, status: str, progress: int | None = None,
                   details: dict[str, Any] | None = None) -> None:
        """Report where job ``job_id`` stands (``in_progress``, ``succeeded``, ``failed``)."""
        envelope: dict[str, Any] = {"type": "job_update", "id": job_id, "status": status}
        if progress is not None:
            envelope["progress"] = progress
        if details is not None:
            envelope["details"] = details
        self._outbox(envelope)

    def _execute_job(self, job: Envelope) -> dict[str, Any]:
        answer: dict[str, Any] = {"type": "job_update", "id": job.get("id"), "status": "succeeded"}
        handler = self.on_job
        if handler is None:
            return {**answer, "status": "failed", "details": {"error": "this device takes no jobs"}}
        try:
            details = handler(str(job.get("id")), dict(job.get("document") or {}))
        except Exception as exc:
            return {**answer, "status": "failed", "details": {"error": str(exc) or type(exc).__name__}}
        return {**answer, "details": details if details is None or isinstance(details, dict) else {"value": details}}

    def _execute(self, command: Envelope) -> dict[str, Any]:
        answer: dict[str, Any] = {"type": "command_result", "id": command.get("id"), "ok": True, "result": None,
                                  "error": None}
        handler = self.on_command
        if handler is None:
            return {**answer, "ok": False, "error": "this device takes no commands"}
        try:
            result = handler(str(command.get("name")), dict(command.get("params") or {}))
        except Exception as exc:
            return {**answer, "ok": False, "error": str(exc) or type(exc).__name__}
        return {**answer, "result": result if result is None or isinstance(result, dict) else {"value": result}}

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            if self._probe.connack(reason_code.value == _UNSUPPORTED_PROTOCOL, self._ready):
                return
            name = reason_code.getName()
            if not self._ready.is_set():
                self._connect_error = (NotAuthorizedError(f"broker refused the device's credentials: {name}")
                                       if reason_code.value in _AUTH_REFUSED
                                       else ConnectError(f"broker refused the connection: {name}"))
                self._ready.set()
            else:
                log.warning("device %s: reconnect refused: %s", self.device_id, name)
            return
        self.connected = True
        _, self._sub_mid = client.subscribe(self.inbox_topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                      properties: Properties | None) -> None:
        if mid != self._sub_mid or self._ready.is_set():
            return
        if any(rc.is_failure for rc in reason_codes):
            self._connect_error = SubscribeDeniedError(f"broker refused the subscription to {self.inbox_topic}")
        self._ready.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        if self._probe.closed(self._ready):
            return
        self.connected = False

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                    properties: Properties | None) -> None:
        refusal = publish_refusal(reason_code, properties)
        self._outcomes[mid] = refusal  # at most one per packet id: a later publish with the id replaces it
        if refusal is not None:
            log.info("device %s: publish refused with reason 0x%02X (%s): %s", self.device_id, refusal.reason_code,
                     refusal.code, refusal.reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            envelope = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            log.warning("device %s: dropping undecodable payload (%d bytes)", self.device_id, len(msg.payload))
            return
        if not isinstance(envelope, dict):
            return
        kind = envelope.get("type")
        if kind in ("command", "job"):
            self._commands.put(envelope)
            return
        if kind in ("shadow", "shadow_delta"):
            self.shadow._received(envelope)
            return
        if kind != "error":
            return
        with self._cond:
            self.errors.append(envelope)
            self._cond.notify_all()
        if self.on_error is not None:
            try:
                self.on_error(envelope)
            except Exception:
                log.exception("device %s: error in on_error", self.device_id)
