"""Which Debian mirrors the nodes use: the stack's own (ministries), else this host's apt sources (lab)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import MINISTRY_STACKS, STACKS_DIR

from visio_infra.model.apt_sources import (
    AptSourcesError,
    Mirrors,
    host_mirrors,
    parse_host_sources,
    security_sibling,
    stack_mirrors,
    with_node_mirrors,
)
from visio_infra.model.stack_file import load_stack_file

DEB822 = """\
Types: deb
# http://snapshot.mirror.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""

ONE_LINE = """\
# the host's archive
deb [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] http://local.mirror.example/debian/ bookworm main
deb-src http://src.mirror.example/debian bookworm main
deb http://local.mirror.example/debian bookworm-updates main contrib
deb [ trusted=yes ] https://sec.mirror.example/debian-security bookworm-security main
"""

THIRD_PARTY = """\
Types: deb
URIs: https://vendor.example/node_20.x
Suites: nodistro
Components: main
"""


def test_deb822_sources_as_on_this_kind_of_host():
    assert parse_host_sources({"/etc/apt/sources.list.d/debian.sources": DEB822}) == Mirrors(
        "http://mirror.example/debian", "http://mirror.example/debian-security"
    )


def test_one_line_sources_with_options():
    assert parse_host_sources({"/etc/apt/sources.list": ONE_LINE}) == Mirrors(
        "http://local.mirror.example/debian", "https://sec.mirror.example/debian-security"
    )


def test_third_party_repositories_disabled_stanzas_and_other_file_names_are_ignored():
    disabled = DEB822.replace("Types: deb\n", "Types: deb\nEnabled: no\n", 1)
    files = {
        "/etc/apt/sources.list.d/a-vendor.sources": THIRD_PARTY,
        "/etc/apt/sources.list.d/b.list.disabled": ONE_LINE,
        "/etc/apt/sources.list.d/debian.sources": disabled,
        "/etc/apt/sources.list.d/local.list": "deb file:/srv/debian bookworm main\n" + ONE_LINE,
    }
    assert parse_host_sources(files).package == "http://local.mirror.example/debian"


def test_security_mirror_defaults_to_the_archive_sibling():
    only_archive = "deb http://mirror.example/debian bookworm main\n"
    mirrors = parse_host_sources({"sources.list": only_archive})
    assert mirrors.security == "http://mirror.example/debian-security"
    assert security_sibling("http://miroir.interieur.gouv.fr/debian/") == (
        "http://miroir.interieur.gouv.fr/debian-security"
    )


def test_a_host_on_another_debian_release_still_gives_its_mirror():
    trixie = (
        "deb http://bpo.mirror.example/debian trixie-backports main\n"
        "deb http://mirror.example/debian trixie main\n"
    )
    assert parse_host_sources({"sources.list": trixie}).package == "http://mirror.example/debian"


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"sources.list": "# nothing\n"},
        {"vendor.sources": THIRD_PARTY},
        {"x.list": "deb cdrom:[x]/ bookworm main\n"},
    ],
)
def test_no_debian_archive_names_the_fix(files):
    with pytest.raises(AptSourcesError) as caught:
        parse_host_sources(files, source="/etc/apt")
    assert str(caught.value).startswith("/etc/apt: no http(s) `deb` entry")
    assert "stacks/Pulumi.lab.yaml (visio:cloud.package_mirror)" in str(caught.value)


def test_a_non_european_host_mirror_is_refused():
    google = "deb https://debian.storage.googleapis.com/debian bookworm main\n"
    with pytest.raises(AptSourcesError, match="non-European"):
        parse_host_sources({"sources.list": google})


def test_reads_the_files_apt_reads(tmp_path: Path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "old.list.disabled-by-someone").write_text(ONE_LINE)
    assert host_mirrors(tmp_path).package == "http://mirror.example/debian"


def test_ministry_stacks_name_their_own_mirror_under_their_domain():
    """A ministry's mirror is under its gouv.fr domain; a stack of the project's own (acceptance)
    uses an example name."""
    for stack in MINISTRY_STACKS:
        config = load_stack_file(STACKS_DIR / f"Pulumi.{stack}.yaml")
        mirrors = stack_mirrors(config.cloud)
        assert mirrors is not None
        host = urlsplit(mirrors.package).hostname or ""
        own = ".gouv.fr" if config.cloud.dns_zone.endswith(".gouv.fr") else ".example"
        assert host.endswith(own), (stack, mirrors)
        assert mirrors.security == security_sibling(mirrors.package)


def test_the_lab_names_no_mirror_and_converges_with_the_host_ones(tmp_path: Path):
    lab = load_stack_file(STACKS_DIR / "Pulumi.lab.yaml")
    assert stack_mirrors(lab.cloud) is None
    (tmp_path / "sources.list").write_text(ONE_LINE)
    filled = with_node_mirrors(lab, tmp_path)
    assert stack_mirrors(filled.cloud) == Mirrors(
        "http://local.mirror.example/debian", "https://sec.mirror.example/debian-security"
    )
    ministry = load_stack_file(STACKS_DIR / "Pulumi.interieur.yaml")
    assert with_node_mirrors(ministry, tmp_path).cloud.package_mirror == "http://miroir.interieur.gouv.fr/debian"
