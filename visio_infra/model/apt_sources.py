"""Which Debian mirrors the nodes install from.

A ministry names its own mirror in its stack file (`visio:cloud.package_mirror`, required for
OpenStack); the security mirror defaults to its `-security` sibling (the layout of Debian's own
mirrors). The lab names none: its machines use whatever this host's apt already uses, read from
/etc/apt/sources.list and sources.list.d (one-line and deb822 files), so the repository never
names a public mirror and the lab reaches only the mirror its host was set up with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from visio_infra.model.config.cloud import LabCloud, OpenStackCloud
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.sovereignty import describe_foreign_endpoints

SUITE = "bookworm"
"""The Debian release of every node."""

DEBIAN_SUITES = frozenset(
    {"bullseye", "bookworm", "trixie", "forky", "duke", "sid",
     "oldoldstable", "oldstable", "stable", "testing", "unstable"}
)
"""Suites whose `deb` lines point at a Debian archive (a host on another release still names a
mirror that carries bookworm); any other suite is a third-party repository and is ignored."""

APT_DIR = Path("/etc/apt")


class AptSourcesError(RuntimeError):
    """The host's apt sources name no usable Debian mirror (or a non-European one)."""


@dataclass(frozen=True)
class Mirrors:
    """The archive (`bookworm`, `bookworm-updates`) and security (`bookworm-security`) mirrors."""

    package: str
    security: str


def security_sibling(package_mirror: str) -> str:
    """`…/debian` -> `…/debian-security`: where a full Debian mirror keeps the security archive."""
    return package_mirror.rstrip("/") + "-security"


def stack_mirrors(cloud: OpenStackCloud | LabCloud) -> Mirrors | None:
    """The mirrors the stack file names (pure); None when it leaves them to the host (the lab)."""
    if cloud.package_mirror is None:
        return None
    return Mirrors(cloud.package_mirror, cloud.security_mirror or security_sibling(cloud.package_mirror))


def _one_line_entries(text: str) -> list[tuple[str, list[str]]]:
    entries: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # [signed-by=... arch=...] options
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            entries.append((words[0], [words[1]]))
    return entries


def _deb822_entries(text: str) -> list[tuple[str, list[str]]]:
    entries: list[tuple[str, list[str]]] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        entries.extend((uri, suites) for uri in fields.get("uris", "").split())
    return entries


def _release(suite: str) -> tuple[str, str]:
    name, _, pocket = suite.partition("-")
    return name, pocket


def parse_host_sources(files: Mapping[str, str], source: str = "/etc/apt") -> Mirrors:
    """The host's Debian mirrors from its apt source files ({file name: text}, pure).

    The archive is the first http(s) `deb` entry for `bookworm` (else for any Debian suite, with a
    suite-less pocket); the security mirror the first for `<suite>-security`, else the archive's
    `-security` sibling. Raises AptSourcesError naming the files and the fix."""
    entries: list[tuple[str, list[str]]] = []
    for name in files:
        if name.endswith(".sources"):
            entries += _deb822_entries(files[name])
        elif name.endswith(".list"):
            entries += _one_line_entries(files[name])
    debian = [
        (uri.rstrip("/"), suite)
        for uri, suites in entries
        for suite in suites
        if urlsplit(uri).scheme in ("http", "https") and _release(suite)[0] in DEBIAN_SUITES
    ]
    archive = [uri for uri, suite in debian if suite == SUITE] or [
        uri for uri, suite in debian if _release(suite)[1] in ("", "updates")
    ]
    if not archive:
        raise AptSourcesError(
            f"{source}: no http(s) `deb` entry for a Debian archive in {', '.join(files) or 'no file'}; "
            "the lab's machines use this host's mirror: add one to the host's apt sources, or name a "
            "mirror in stacks/Pulumi.lab.yaml (visio:cloud.package_mirror)"
        )
    security = [uri for uri, suite in debian if _release(suite)[1] == "security"]
    mirrors = Mirrors(archive[0], security[0] if security else security_sibling(archive[0]))
    for url in (mirrors.package, mirrors.security):
        foreign = describe_foreign_endpoints(url)
        if foreign:
            raise AptSourcesError(
                f"{source}: the host's mirror {url} is {', '.join(foreign)}, a non-European service; "
                "name a European mirror in stacks/Pulumi.lab.yaml (visio:cloud.package_mirror)"
            )
    return mirrors


def read_host_sources(apt_dir: Path = APT_DIR) -> dict[str, str]:
    """The apt source files apt itself reads: sources.list, then sources.list.d/*.list|*.sources."""
    parts = sorted(p for p in (apt_dir / "sources.list.d").glob("*") if p.suffix in (".list", ".sources"))
    paths = [apt_dir / "sources.list", *parts]
    return {str(p): p.read_text(encoding="utf-8", errors="replace") for p in paths if p.is_file()}


def host_mirrors(apt_dir: Path = APT_DIR) -> Mirrors:
    """This host's Debian mirrors (what the lab's machines use)."""
    return parse_host_sources(read_host_sources(apt_dir), str(apt_dir))


def node_mirrors(cloud: OpenStackCloud | LabCloud, apt_dir: Path = APT_DIR) -> Mirrors:
    """The stack's mirrors, or this host's when the stack names none (the lab)."""
    return stack_mirrors(cloud) or host_mirrors(apt_dir)


def with_node_mirrors(config: StackConfig, apt_dir: Path = APT_DIR) -> StackConfig:
    """`config` with both mirrors filled in (the host's for a lab naming none), for the roles."""
    mirrors = node_mirrors(config.cloud, apt_dir)
    cloud = config.cloud.model_copy(
        update={"package_mirror": mirrors.package, "security_mirror": mirrors.security}
    )
    return config.model_copy(update={"cloud": cloud})
