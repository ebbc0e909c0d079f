"""Hardening measured with the auditors ministries' security teams use (Debian packages): ssh-audit
on every node against its own sshd (always), and testssl.sh against every TLS listener (the part
`visio verify <stack> --hardening` adds: a full scan takes about 20 s per listener).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from . import expectations as ex
from .conftest import stack_outputs


def test_hardening_ssh_audit(node):
    """No key exchange, cipher, MAC or host key ssh-audit rates as failing, no unexplained warning."""
    result = node.host.run(f"ssh-audit -n -p 22 {node.private_ip}")
    # ssh-audit 2.5.0 exits 0 (good), 2 (warnings), 3 (failures); 1 (connection error) and 255
    # (unknown error) mean it could not audit.
    assert result.rc in (0, 2, 3), (
        f"{node}: ssh-audit could not run ({result.rc}): {result.stderr.strip()[:300]}"
    )
    findings = ex.ssh_audit_findings(result.stdout)
    assert result.rc == 0 or findings, f"{node}: ssh-audit exited {result.rc} but printed no finding"
    problems = ex.ssh_audit_problems(findings)
    assert not problems, f"{node}: ssh-audit: " + "; ".join(problems)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "tls_listener" in metafunc.fixturenames:
        listeners = ex.tls_listeners(stack_outputs()["inventory"])
        metafunc.parametrize("tls_listener", listeners, ids=[f"{n}:{p}" for n, _, p, _ in listeners])


@pytest.mark.hardening
def test_hardening_tls_listener(tls_listener):
    """testssl.sh (Debian): no SSLv2/3, TLS 1.0/1.1, NULL/export/LOW/3DES/CBC suites, nothing rated
    MEDIUM or worse."""
    name, address, port, starttls = tls_listener
    with tempfile.TemporaryDirectory(prefix="visio-testssl-") as work:
        report = Path(work) / "testssl.json"
        command = ["testssl", "--quiet", "--warnings", "off", "--color", "0", "-p", "-s",
                   "--jsonfile", str(report)]
        command += ["-t", starttls] if starttls else []
        done = subprocess.run([*command, f"{address}:{port}"], capture_output=True, text=True,
                              timeout=300, check=False)
        assert report.exists(), (
            f"{name}:{port}: testssl wrote no report ({done.returncode}): {done.stdout[-400:]}"
        )
        entries = json.loads(report.read_text(encoding="utf-8"))
    problems = ex.testssl_problems(entries)
    assert not problems, f"{name} {address}:{port}: " + "; ".join(problems)

