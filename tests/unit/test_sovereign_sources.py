"""Nothing the project renders onto a host names a non-European service (sovereignty, statically).

The live counterpart is `visio verify` (tests/verify), which reads the rendered LiveKit and chrony
configuration on the hosts. This scan catches a foreign default before any host is touched: every
role template, default, task and playbook, minus comments and the two deny-lists whose job is to
name those services.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from visio_infra.model.sovereignty import find_foreign_endpoints

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("roles", "playbooks", "templates")
DENY_LISTS = {
    Path("roles/livekit/vars/main.yml"),  # refused STUN/TURN domains
    Path("roles/common/vars/main.yml"),  # refused time-service domains
}
_COMMENT = re.compile(r"(?s:\{#.*?#\})|^\s*#.*$|\s#\s.*$", re.M)
"""Jinja comments (multi-line), YAML/shell comment lines, and trailing ` # ...` comments."""


def _sources() -> list[Path]:
    return sorted(
        path.relative_to(REPO)
        for folder in SCANNED
        for path in (REPO / folder).rglob("*")
        if path.is_file() and path.suffix in {".yml", ".yaml", ".j2", ".py", ".conf"}
    )


def test_the_scan_covers_the_service_templates() -> None:
    names = {str(p) for p in _sources()}
    for expected in ("roles/livekit/templates/config.yaml.j2", "roles/coturn/templates/turnserver.conf.j2",
                     "roles/common/templates/chrony.conf.j2", "templates/cloud-init.yaml.j2"):
        assert expected in names


@pytest.mark.parametrize("path", [p for p in _sources() if p not in DENY_LISTS], ids=str)
def test_no_foreign_endpoint_in(path: Path) -> None:
    text = _COMMENT.sub("", (REPO / path).read_text(encoding="utf-8"))
    assert find_foreign_endpoints(text) == []


def test_the_scan_would_see_a_foreign_default() -> None:
    text = "livekit_stun_servers: [stun.l.google.com:19302]  # a comment is ignored\n"
    assert find_foreign_endpoints(_COMMENT.sub("", text)) == ["stun.l.google.com"]
    assert find_foreign_endpoints(_COMMENT.sub("", "# time.google.com only in a comment\n")) == []
    # a comment early in a file does not hide what follows it
    hidden = _COMMENT.sub("", "# note\nserver: time.google.com\n")
    assert find_foreign_endpoints(hidden) == ["time.google.com"]


def test_the_deny_lists_still_name_what_they_refuse() -> None:
    for path in DENY_LISTS:
        assert find_foreign_endpoints((REPO / path).read_text(encoding="utf-8")), path
