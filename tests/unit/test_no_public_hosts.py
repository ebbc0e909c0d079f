"""No public Debian mirror is written into the repository, so none can come back unnoticed.

A ministry installs from its own mirror (`visio:cloud.package_mirror`, required), the lab from
whatever its host's apt uses (`visio_infra.model.apt_sources`), and tests use example names
(`mirror.example`). Every file git tracks, or would track (untracked but not ignored), is scanned,
documentation included: a mirror named in the README or docs is the one a newcomer copies into a
stack file, and none needs one to explain itself. Two kinds of names are refused:

- any host of the Debian project's mirror networks (deb., security., ftp., ftp.<country>., snapshot.,
  httpredir., cdn... under the project's domains), wherever it appears;
- any other host serving a Debian archive path (`http(s)://HOST/debian...`) or named on an apt
  `deb` line, unless it is an example or own name (`*.example`, `*.test`, `*.invalid`, `*.gouv.fr`,
  `localhost`, private addresses) or a host the sovereignty deny-list already refuses (named only to
  test that refusal, never usable as a mirror).
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

import pytest

from visio_infra.model.sovereignty import describe_foreign_endpoints

ROOT = Path(__file__).resolve().parents[2]

DEBIAN_MIRROR_NETWORK = re.compile(
    r"\b(?:(?:deb|security|ftp|http|httpredir|snapshot|cdn|cdn-fastly|mirrors?|archive|incoming)\.)"
    r"(?:[a-z]{2}\.)?debian\.(?:org|net)\b",
    re.IGNORECASE,
)
"""The Debian project's own mirror hosts (web pages such as its wiki or bug tracker are not mirrors)."""

ARCHIVE_URL = re.compile(r"\bhttps?://([A-Za-z0-9.\-\[\]:]+?)(?::\d+)?/debian(?:-[a-z]+)?\b")
"""A URL to a Debian archive tree: `/debian`, `/debian-security`, `/debian-ports`..."""

DEB_LINE = re.compile(
    r"^\s*(?:deb|deb-src|URIs:)\s+(?:\[[^\]]*\]\s+)?[a-z+]+://([A-Za-z0-9.\-]+)", re.MULTILINE
)
"""An apt source entry, one-line (`deb [opts] URI ...`) or deb822 (`URIs: URI`)."""

OWN_OR_EXAMPLE = re.compile(
    r"(?:^|\.)(?:example|test|invalid|localhost)$|(?:^|\.)example\.(?:org|com|net)$|\.gouv\.fr$",
    re.IGNORECASE,
)


def _allowed_host(host: str) -> bool:
    host = host.strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return bool(OWN_OR_EXAMPLE.search(host)) or bool(describe_foreign_endpoints(host))
    return address.is_private or address.is_loopback


def public_mirror_hosts(text: str) -> list[str]:
    """Public Debian mirror host names in `text` (pure, sorted, unique)."""
    found = {m.group(0).lower() for m in DEBIAN_MIRROR_NETWORK.finditer(text)}
    for pattern in (ARCHIVE_URL, DEB_LINE):
        found |= {m.group(1).lower() for m in pattern.finditer(text) if not _allowed_host(m.group(1))}
    return sorted(found)


def _repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()
    return [ROOT / name for name in sorted(set(listed.split("\0"))) if name and (ROOT / name).is_file()]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def test_no_tracked_file_names_a_public_debian_mirror():
    files = _repository_files()
    assert len(files) > 100 and ROOT / "roles/common/defaults/main.yml" in files
    offending = []
    for path in files:
        text = _text(path)
        if text is not None:
            offending += [f"{path.relative_to(ROOT)}: {host}" for host in public_mirror_hosts(text)]
    assert not offending, (
        "public Debian mirror hosts written into the repository (ministries name their own mirror in "
        "visio:cloud.package_mirror, the lab uses its host's apt sources, tests use mirror.example):\n  "
        + "\n  ".join(offending)
    )


# The scanner itself must be able to fail. Names are assembled so this file does not name them.
PROJECT = "debian" + ".org"
OVH = "debian.mirrors.ovh" + ".net"
PUBLIC_IP = "93.184.216" + ".34"


@pytest.mark.parametrize(
    ("text", "host"),
    [
        (f"common_package_mirror: http://deb.{PROJECT}/debian", f"deb.{PROJECT}"),
        (f"url: https://security.{PROJECT}/debian-security", f"security.{PROJECT}"),
        (f"package_mirror: http://ftp.fr.{PROJECT}/debian", f"ftp.fr.{PROJECT}"),
        (f"# http://snapshot.{PROJECT}/archive/debian/20250520T000000Z", f"snapshot.{PROJECT}"),
        (f"bookworm /srv/base deb.{PROJECT}", f"deb.{PROJECT}"),
        (f"mirror: http://{OVH}/debian", OVH),
        ("deb [arch=amd64] https://mirror.one.com/ bookworm main", "mirror.one.com"),
        ("URIs: http://ftp.uni-example.de/pub/linux", "ftp.uni-example.de"),
        (f"debootstrap bookworm /x http://{PUBLIC_IP}:8080/debian", PUBLIC_IP),
    ],
)
def test_scanner_finds_public_mirrors(text, host):
    assert host in public_mirror_hosts(text)


@pytest.mark.parametrize(
    "text",
    [
        "package_mirror: http://miroir.interieur.gouv.fr/debian",
        "deb http://mirror.example/debian bookworm main\nURIs: https://deb.mirror.example/debian-security",
        "http://10.0.0.5/debian and http://[fd00::5]/debian-security and http://localhost:3142/debian",
        "https://debian-mirror.storage.googleapis.com/debian (refused by the sovereignty deny-list)",
        f"see https://wiki.{PROJECT}/DebianRepository/Format and https://bugs.{PROJECT}/1",
        "the Debian mirror sits behind a CDN; /usr/share/keyrings/debian-archive-keyring.gpg",
    ],
)
def test_scanner_lets_own_example_and_denied_names_through(text):
    assert public_mirror_hosts(text) == []
