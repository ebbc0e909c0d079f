"""Reading the certificate a listener serves (probes/served_certificate.py), against real local TLS
listeners: a plain TLS one and one that answers PostgreSQL's SSLRequest first."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from visio_infra.cloud.pki import CERT_VALIDITY, issue_ca, issue_certificate
from visio_infra.probes.served_certificate import (
    POSTGRES_SSL_REQUEST,
    ServedCertificateError,
    served_not_after,
)

ISSUED = dt.datetime.now(dt.UTC).replace(microsecond=0) - CERT_VALIDITY + dt.timedelta(days=10)
"""Issued long ago: ten days left, inside the renewal margin."""


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ca_cert, ca_key = issue_ca("Test CA", "Visio - test", ISSUED)
    cert, key = issue_certificate(ca_cert, ca_key, "Visio - test",
                                  {"dns": ["signalling.example.org"], "ips": ["127.0.0.1"]}, ISSUED)
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_text(cert)
    (folder / "key.pem").write_text(key)
    return folder / "cert.pem", folder / "key.pem"


def _serve(tls_files: tuple[Path, Path], *, postgres: bool, answer: bytes = b"S") -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                if postgres:
                    assert conn.recv(8) == POSTGRES_SSL_REQUEST
                    conn.sendall(answer)
                    if answer != b"S":
                        return
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except (OSError, ssl.SSLError):
                    pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    thread.join(10)


@pytest.fixture
def tls_port(tls_files: tuple[Path, Path]) -> Iterator[int]:
    yield from _serve(tls_files, postgres=False)


@pytest.fixture
def postgres_port(tls_files: tuple[Path, Path]) -> Iterator[int]:
    yield from _serve(tls_files, postgres=True)


@pytest.fixture
def postgres_without_tls_port(tls_files: tuple[Path, Path]) -> Iterator[int]:
    yield from _serve(tls_files, postgres=True, answer=b"N")


def test_reads_the_end_date_a_tls_listener_serves(tls_port: int) -> None:
    not_after = served_not_after("127.0.0.1", tls_port, server_name="signalling.example.org")
    assert not_after == ISSUED + CERT_VALIDITY


def test_postgresql_gets_its_sslrequest_first(postgres_port: int) -> None:
    assert served_not_after("127.0.0.1", postgres_port, postgres=True) == ISSUED + CERT_VALIDITY


def test_a_postgresql_without_tls_is_a_clear_error(postgres_without_tls_port: int) -> None:
    with pytest.raises(ServedCertificateError, match=r"refused TLS \(SSLRequest answered b'N'\)"):
        served_not_after("127.0.0.1", postgres_without_tls_port, postgres=True)


def test_nothing_listening_is_a_clear_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(ServedCertificateError, match=f"127.0.0.1:{port}: ConnectionRefusedError"):
        served_not_after("127.0.0.1", port, timeout=2)
