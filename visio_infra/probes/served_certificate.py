"""The certificate a TLS listener actually serves, read over the network as a client would.

What counts for a client is the certificate on the wire, not the file on disk: a service that was not
reloaded after a renewal still serves the old one. PostgreSQL speaks TLS only after its own
SSLRequest message, so `postgres=True` sends that first. Nothing is verified here (the verify suite
checks the chain and the names elsewhere); this only reads the certificate's end date.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import struct

from cryptography import x509

POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
"""PostgreSQL's SSLRequest: length 8, code 1234.5679; the server answers one byte, S (TLS) or N."""


class ServedCertificateError(RuntimeError):
    """The listener did not hand over a certificate (no TLS, refused, or nothing on the wire)."""


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only the end date is read; the chain is checked elsewhere
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def served_certificate(
    host: str, port: int, *, server_name: str | None = None, postgres: bool = False, timeout: float = 5.0
) -> x509.Certificate:
    """The leaf certificate `host:port` serves (SNI `server_name` when given)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if postgres:
                raw.sendall(POSTGRES_SSL_REQUEST)
                answer = raw.recv(1)
                if answer != b"S":
                    raise ServedCertificateError(
                        f"{host}:{port} refused TLS (SSLRequest answered {answer!r})"
                    )
            with _unverified_context().wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise ServedCertificateError(f"{host}:{port}: {type(exc).__name__}: {exc}") from exc
    if not der:
        raise ServedCertificateError(f"{host}:{port} served no certificate")
    return x509.load_der_x509_certificate(der)


def served_not_after(
    host: str, port: int, *, server_name: str | None = None, postgres: bool = False, timeout: float = 5.0
) -> dt.datetime:
    """When the certificate `host:port` serves ends (UTC)."""
    cert = served_certificate(host, port, server_name=server_name, postgres=postgres, timeout=timeout)
    return cert.not_valid_after_utc
