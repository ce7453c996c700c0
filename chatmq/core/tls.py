"""TLS of a chatmq process's listeners: the server contexts, loaded from ``tls_cert``/``tls_key``
(and ``tls_client_ca``), checked at start, and reloaded in place on SIGHUP.

``ServerTls`` holds two ``ssl.SSLContext``s, made once and handed to the listeners:

* ``mqtt``: MQTT over TLS; with a client CA it asks for a client certificate (``CERT_OPTIONAL``:
  a client may send none, but one it sends must come from that CA);
* ``web``: MQTT over secure WebSocket and HTTPS (no client certificates).

``reload()`` checks the files in a fresh context first, then loads them into those same
contexts: handshakes from then on present the new certificate, connections already open keep
theirs (OpenSSL copies the certificate into each connection when it is made). Files that do not
load leave the contexts as they were. A CA added to ``tls_client_ca`` is trusted after a reload;
one removed from it stays trusted until a restart (OpenSSL cannot forget a loaded CA).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

from chatmq.core.errors import ConfigError
from chatmq.core.settings import Settings

log = logging.getLogger("chatmq")


def _setting(name: str) -> str:
    return f"{name} (CHATMQ_{name.upper()})"


def _read_pem(name: str, path: Path) -> None:
    """``ConfigError`` naming setting ``name`` when ``path`` is missing, unreadable or not PEM."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{_setting(name)}: {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{_setting(name)}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{_setting(name)}: {path} is not a PEM file") from None


def _server_context() -> ssl.SSLContext:
    """A server context trusting nothing by default (no system CAs for client certificates)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ServerTls:
    """The TLS contexts of a process's listeners (see the module docstring); a ``Component`` whose
    ``reload()`` the process calls on SIGHUP."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self.mqtt = _server_context()
        self.web = _server_context()
        if client_ca is not None:
            self.mqtt.verify_mode = ssl.CERT_OPTIONAL
        self.load()

    @classmethod
    def of(cls, settings: Settings) -> ServerTls | None:
        """The contexts for ``settings``' files, ``None`` when TLS is off; ``ConfigError`` naming the setting
        whose file is missing, unreadable, not PEM, or (the key) does not match the certificate."""
        if settings.tls_cert is None or settings.tls_key is None:
            return None
        return cls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)

    def check(self) -> None:
        """Load the files into a throwaway context; ``ConfigError`` naming the setting at fault."""
        _read_pem("tls_cert", self.cert)
        _read_pem("tls_key", self.key)
        probe = _server_context()
        try:
            probe.load_verify_locations(cafile=self.cert)
        except ssl.SSLError as exc:
            raise ConfigError(f"{_setting('tls_cert')}: {self.cert} holds no valid certificate "
                              f"({exc.reason or exc})") from None
        try:
            probe.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as exc:
            why = ("it is not the key of that certificate" if "KEY_VALUES_MISMATCH" in str(exc)
                   else f"not a usable private key ({exc.reason or exc})")
            raise ConfigError(f"{_setting('tls_key')}: {self.key} does not fit tls_cert {self.cert}: {why}") from None
        if self.client_ca is not None:
            _read_pem("tls_client_ca", self.client_ca)
            try:
                probe.load_verify_locations(cafile=self.client_ca)
            except ssl.SSLError as exc:
                raise ConfigError(f"{_setting('tls_client_ca')}: {self.client_ca} holds no valid CA certificate "
                                  f"({exc.reason or exc})") from None

    def load(self) -> None:
        """``check()`` the files, then load them into the contexts the listeners use."""
        self.check()
        for context in (self.mqtt, self.web):
            context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            self.mqtt.load_verify_locations(cafile=self.client_ca)

    def reload(self) -> None:
        """Load the files again (SIGHUP); on a problem log it and keep serving the certificate loaded before."""
        try:
            self.load()
        except (ConfigError, OSError, ssl.SSLError) as exc:
            log.error("TLS certificates not reloaded, still serving the previous ones: %s", exc)
            return
        log.info("TLS certificates reloaded from %s", self.cert)

    async def start(self) -> None:
        """Nothing: the contexts were loaded when made."""

    async def stop(self) -> None:
        """Nothing to release."""


def peer_common_name(ssl_object: Any) -> str | None:
    """The CN of the certificate a TLS peer presented and the context verified (``ssl.SSLObject`` or
    ``ssl.SSLSocket``); ``None`` without a connection over TLS, a certificate, or a CN."""
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    subject: Any = cert.get("subject", ())  # ((("commonName", "d1"),), ...): one tuple of pairs per RDN
    for rdn in subject:
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str):
                return value
    return None
