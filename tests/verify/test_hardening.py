"""Hardening measured with the auditors ministries' security teams use (Debian packages): ssh-audit
on every node against its own sshd and the hardening sysctls in force (always); testssl.sh against
every TLS listener and Lynis on every node (the part `visio verify <stack> --hardening` adds: a full
testssl scan takes about 20 s per listener, Lynis 25-55 s per node).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
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


def _in_container(node) -> bool:
    return node.host.run("systemd-detect-virt --container --quiet").rc == 0


def test_hardening_sysctl_in_force(node, facts):
    """roles/common's hardening sysctl files are on the node as the role's variables say (the network
    one everywhere, the kernel-wide one on a VM), and every value of them is in force."""
    wanted = ex.sysctl_hardening(facts, _in_container(node))
    problems = []
    expected: dict[str, str] = {}
    for path, settings in wanted.items():
        file = node.host.file(path)
        if not file.exists:
            problems.append(f"{path} is missing")
            continue
        written = ex.sysctl_file_settings(file.content_string)
        if written != settings:
            problems.append(f"{path} holds {written}, roles/common says {settings}")
        expected.update(written)
    result = node.host.run("sysctl -a")
    assert result.stdout, f"{node}: `sysctl -a` printed nothing ({result.rc}): {result.stderr.strip()[:300]}"
    problems += ex.sysctl_drift(expected, ex.sysctl_values(result.stdout))
    assert not problems, f"{node}: " + "; ".join(problems)


@pytest.mark.hardening
def test_hardening_lynis(node):
    """Lynis (Debian) on the node: a hardening index of at least LYNIS_MIN_HARDENING_INDEX and no
    warning left unexplained. The figures go to the run's report directory (lynis-<node>.json), which
    `visio verify`'s summary and scripts/bench.sh print."""
    started = time.monotonic()
    result = node.host.run(ex.lynis_command(node.role))
    seconds = time.monotonic() - started
    report = ex.lynis_report(result.stdout)
    report_dir = os.environ.get("VISIO_VERIFY_REPORT_DIR")
    if report_dir:
        figures = ex.lynis_figures(node.name, node.role, report, seconds)
        path = Path(report_dir) / f"lynis-{node.name}.json"
        path.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    assert result.rc == 0, f"{node}: Lynis exited {result.rc}: {result.stderr.strip()[:300]}"
    problems = ex.lynis_problems(report)
    assert not problems, f"{node}: Lynis: " + "; ".join(problems)


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

