"""Checks several sections apply to their fields: SSH public keys, sovereign endpoints (no
non-European service), NTP servers and Debian mirror URLs.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

from visio_infra.model.sovereignty import describe_foreign_endpoints


def ssh_key_problem(key: str) -> str | None:
    """Why `key` is not a usable OpenSSH public key line, or None."""
    parts = key.split()
    shown = key[:40] + ("..." if len(key) > 40 else "")
    if len(parts) < 2:
        return f"'{shown}' is not an SSH public key line ('<type> <base64> [comment]')"
    kind, blob_text = parts[0], parts[1]
    if kind not in (
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
    ):
        return (
            f"'{shown}': key type '{kind}' is not accepted; use ssh-ed25519 (or ecdsa-sha2-nistp*, ssh-rsa)"
        )
    try:
        blob = base64.b64decode(blob_text, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        embedded = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        return f"'{shown}': the key data is not valid base64 OpenSSH key material"
    if embedded != kind:
        return f"'{shown}': the key data is a '{embedded}' key but the line says '{kind}'"
    if kind == "ssh-ed25519" and len(blob) != 4 + len(kind) + 4 + 32:
        return f"'{shown}': truncated ed25519 key (copy the whole line of the .pub file)"
    if kind == "ssh-rsa":
        rest = blob[4 + length :]
        (elen,) = struct.unpack(">I", rest[:4])
        (nlen,) = struct.unpack(">I", rest[4 + elen : 8 + elen] or b"\0\0\0\0")
        bits = (nlen - 1) * 8 if nlen else 0
        if bits < 2048:
            return f"'{shown}': RSA key of about {bits} bits; use ssh-ed25519 or RSA of at least 2048 bits"
    return None


def _check_sovereign(url: str) -> None:
    """Refuse endpoints run by non-European companies (the list lives in `visio_infra.model.sovereignty`)."""
    found = describe_foreign_endpoints(url)
    if found:
        raise ValueError(
            f"'{url}' points to {', '.join(found)}, a non-European service; Visio's endpoints stay on "
            "sovereign infrastructure (the ministry's own or a SecNumCloud provider's)"
        )


_NTP_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.:-]*[A-Za-z0-9])?$")


def _ntp_servers(servers: list[str]) -> list[str]:
    problems = []
    if not servers:
        problems.append("give at least one NTP server (e.g. ntp1.interieur.gouv.fr)")
    for server in servers:
        if not _NTP_HOST.match(server):
            problems.append(f"'{server}' is not a host name or an IP address (e.g. ntp1.interieur.gouv.fr)")
            continue
        found = describe_foreign_endpoints(server)
        if found:
            problems.append(
                f"'{server}' is {', '.join(found)}, a non-European time service; use the ministry's own "
                "NTP servers or the French NTP Pool zone (0.fr.pool.ntp.org)"
            )
    if len(set(servers)) != len(servers):
        problems.append("the same NTP server is listed twice")
    if problems:
        raise ValueError("; ".join(problems))
    return servers


def _mirror_url(url: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ValueError(
            f"'{url}' is not an http(s) URL of a Debian mirror (e.g. http://miroir.interieur.gouv.fr/debian)"
        )
    _check_sovereign(url)
    return url.rstrip("/")
