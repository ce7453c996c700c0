"""Throwaway certificate authorities and certificates for the TLS tests (``trustme``).

``TestCA(directory)`` makes a CA and writes its certificate to ``ca.pem``; ``server()`` issues a
server certificate for 127.0.0.1/localhost and ``client(cn)`` a client certificate whose subject CN is
``cn``, each written as PEM files (certificate chain, private key) under ``directory``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import trustme

_serial = itertools.count(1)


@dataclass(frozen=True, slots=True)
class CertFiles:
    """A certificate chain and its private key, as PEM files."""

    cert: Path
    key: Path


class TestCA:
    """A CA of its own whose certificate is ``ca_file``; everything it issues goes under ``directory``."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(organization_name=f"chatmq test {name}")
        self.ca_file = directory / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def _write(self, cert: trustme.LeafCert, stem: str) -> CertFiles:
        n = next(_serial)
        files = CertFiles(self.directory / f"{stem}-{n}.crt", self.directory / f"{stem}-{n}.key")
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        files.cert.write_bytes(chain)
        cert.private_key_pem.write_to_path(str(files.key))
        return files

    def server(self, *hosts: str) -> CertFiles:
        """A server certificate for ``hosts`` (default 127.0.0.1 and localhost)."""
        return self._write(self.ca.issue_cert(*(hosts or ("127.0.0.1", "localhost"))), "server")

    def client(self, common_name: str) -> CertFiles:
        """A client certificate whose subject CN is ``common_name``."""
        return self._write(self.ca.issue_cert(common_name=common_name), "client")
