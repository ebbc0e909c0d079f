"""Hardening measured with the auditors ministries' security teams use (Debian packages, run on each
node): ssh-audit against the node's own sshd. Select with `visio verify <stack> -k hardening`."""

from __future__ import annotations

from . import expectations as ex


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
