"""``chatmq.core.tls``: the server contexts, the start-up checks that name the setting at fault, the
reload on SIGHUP, the CN of a client certificate; and the TLS settings."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from chatmq.broker.node import TlsListeners, listeners_config
from chatmq.core.errors import ConfigError
from chatmq.core.settings import Settings
from chatmq.core.tls import ServerTls, peer_common_name
from tests.fakes.tls import CertFiles, TestCA


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A TLS handshake in memory between ``client`` and ``server``; both ends' ``SSLObject``s."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(10):
        for name, end in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())
        if all(done.values()):
            return c, s
    raise AssertionError("handshake did not finish")


def client_context(ca: TestCA, cert: CertFiles | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.ca_file))
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


def served_certificate(tls: ServerTls, ca: TestCA) -> bytes:
    client, _server = handshake(tls.web, client_context(ca))
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(files: CertFiles) -> bytes:
    return ssl.PEM_cert_to_DER_cert(files.cert.read_text())


def test_a_client_trusting_the_ca_verifies_the_served_certificate(ca: TestCA) -> None:
    files = ca.server()
    tls = ServerTls(files.cert, files.key)
    assert served_certificate(tls, ca) == der_of(files)


def test_a_client_not_trusting_the_ca_fails_the_handshake(ca: TestCA, tmp_path: Path) -> None:
    files = ca.server()
    stranger = TestCA(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ServerTls(files.cert, files.key).mqtt, client_context(stranger))


def test_missing_certificate_names_tls_cert(ca: TestCA, tmp_path: Path) -> None:
    files = ca.server()
    with pytest.raises(ConfigError, match=r"tls_cert \(CHATMQ_TLS_CERT\): .*nope.pem does not exist"):
        ServerTls(tmp_path / "nope.pem", files.key)


def test_unreadable_key_names_tls_key(ca: TestCA, tmp_path: Path) -> None:
    files = ca.server()
    with pytest.raises(ConfigError, match=r"tls_key \(CHATMQ_TLS_KEY\): cannot read"):
        ServerTls(files.cert, tmp_path)  # a folder: cannot be read as a file


def test_a_file_that_is_not_pem_names_its_setting(ca: TestCA, tmp_path: Path) -> None:
    files = ca.server()
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    with pytest.raises(ConfigError, match=r"tls_cert .*junk.pem is not a PEM file"):
        ServerTls(junk, files.key)
    with pytest.raises(ConfigError, match=r"tls_key .*junk.pem is not a PEM file"):
        ServerTls(files.cert, junk)


def test_a_key_as_the_certificate_names_tls_cert(ca: TestCA) -> None:
    files = ca.server()
    with pytest.raises(ConfigError, match=r"tls_cert .* holds no valid certificate"):
        ServerTls(files.key, files.key)


def test_a_key_of_another_certificate_names_tls_key(ca: TestCA) -> None:
    one, other = ca.server(), ca.server()
    with pytest.raises(ConfigError, match=r"tls_key .* does not fit tls_cert .*not the key of that certificate"):
        ServerTls(one.cert, other.key)


def test_a_bad_client_ca_names_tls_client_ca(ca: TestCA, tmp_path: Path) -> None:
    files = ca.server()
    with pytest.raises(ConfigError, match=r"tls_client_ca .* holds no valid CA certificate"):
        ServerTls(files.cert, files.key, files.key)


def test_reload_serves_the_new_certificate_to_new_handshakes(ca: TestCA, tmp_path: Path) -> None:
    first, second = ca.server(), ca.server()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    tls = ServerTls(cert, key)
    before = tls.web
    assert served_certificate(tls, ca) == der_of(first)
    cert.write_bytes(second.cert.read_bytes())
    key.write_bytes(second.key.read_bytes())
    tls.reload()
    assert tls.web is before  # the same context the listeners hold
    assert served_certificate(tls, ca) == der_of(second)


def test_reload_of_bad_files_keeps_the_old_certificate(ca: TestCA, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    first, other = ca.server(), ca.server()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    tls = ServerTls(cert, key)
    key.write_bytes(other.key.read_bytes())  # half-replaced: the new key does not fit the old certificate
    with caplog.at_level(logging.ERROR, logger="chatmq"):
        tls.reload()
    assert "TLS certificates not reloaded" in caplog.text
    assert "tls_key" in caplog.text
    assert served_certificate(tls, ca) == der_of(first)


def test_client_certificate_cn_from_the_client_ca_only(ca: TestCA, tmp_path: Path) -> None:
    files = ca.server()
    tls = ServerTls(files.cert, files.key, ca.ca_file)
    _, server_end = handshake(tls.mqtt, client_context(ca, ca.client("d0123456789abcdef")))
    assert peer_common_name(server_end) == "d0123456789abcdef"
    _, anonymous = handshake(tls.mqtt, client_context(ca))  # CERT_OPTIONAL: no certificate is fine
    assert peer_common_name(anonymous) is None
    stranger = TestCA(tmp_path / "stranger")
    with pytest.raises(ssl.SSLError):  # a certificate from another CA is refused at the handshake
        handshake(tls.mqtt, client_context(ca, stranger.client("d0123456789abcdef")))
    _, web = handshake(tls.web, client_context(ca, ca.client("d0123456789abcdef")))
    assert peer_common_name(web) is None  # the WebSocket/HTTPS context asks for no certificate
    assert peer_common_name(None) is None


def test_tls_settings_go_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls_cert is set but tls_key \(CHATMQ_TLS_KEY\) is not"):
        Settings.load(tls_cert=tmp_path / "c.pem")
    with pytest.raises(ConfigError, match=r"tls_only needs TLS: set tls_cert and tls_key"):
        Settings.load(tls_only=True)
    with pytest.raises(ConfigError, match=r"tls_client_ca needs TLS"):
        Settings.load(tls_client_ca=tmp_path / "ca.pem")
    s = Settings.load()
    assert (s.tls, s.mqtts_port, s.wss_port, s.https_port) == (False, 8883, 8084, 8443)


def test_an_empty_tls_variable_turns_tls_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATMQ_TLS_CERT", "")
    monkeypatch.setenv("CHATMQ_TLS_KEY", "")
    assert Settings.load().tls_cert is None


def test_listeners_beside_the_plain_ones_or_alone(ca: TestCA) -> None:
    files = ca.server()
    tls = ServerTls(files.cert, files.key)
    both = listeners_config("h", 1, 2, TlsListeners(tls, 3, 4))
    assert {name: (cfg["bind"], cfg.get("ssl", False)) for name, cfg in both.items()} == {
        "default": ("h:1", False), "ws": ("h:2", False), "mqtts": ("h:3", True), "wss": ("h:4", True)}
    only = listeners_config("h", 1, 2, TlsListeners(tls, 3, 4, only=True))
    assert {name: (cfg["bind"], cfg["type"]) for name, cfg in only.items()} == {
        "default": ("h:3", "tcp"), "wss": ("h:4", "ws")}
    assert all(cfg["ssl"] for cfg in only.values())
