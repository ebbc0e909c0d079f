"""Every node: services, pinned versions, SSH hardening, host firewall, exact listeners, time, file modes."""

from __future__ import annotations

import re
import shlex
import time

import pytest

from visio_infra.model.sovereignty import describe_foreign_endpoints

from . import expectations as ex

ROLES = ("sfu", "turn", "db", "redis", "bastion", "monitoring")


def _run(node, command: str) -> str:
    result = node.host.run(command)
    assert result.rc == 0, f"{node}: `{command}` failed ({result.rc}): {result.stderr.strip()[:300]}"
    return result.stdout


def _in_container(node) -> bool:
    """Whether the node is a container (the lab), as Ansible's `virtualization_type` sees it."""
    return node.host.run("systemd-detect-virt --container --quiet").rc == 0


def test_services_enabled_and_running(node, facts):
    problems = []
    for unit in (*ex.common_services(_in_container(node)), *ex.role_services(node.role, facts)):
        service = node.host.service(unit)
        if not service.is_running:
            problems.append(f"{unit} is not running")
        # journald is static (always on); everything else must start at boot.
        if unit != "systemd-journald" and not service.is_enabled:
            problems.append(f"{unit} is not enabled at boot")
    assert not problems, f"{node}: " + "; ".join(problems)


def test_pinned_versions(node, config, facts):
    if node.role == "sfu":
        pid = _run(node, "systemctl show -p MainPID --value livekit").strip()
        assert pid not in ("", "0"), f"{node}: livekit has no main process"
        version = _run(node, f"$(readlink -f /proc/{pid}/exe) --version")
        assert version.strip().endswith(config.versions.livekit), (
            f"{node}: the running livekit-server reports {version.strip()!r}, "
            f"stack pins {config.versions.livekit}"
        )
    elif node.role == "turn":
        package = node.host.package("coturn")
        assert package.is_installed, f"{node}: coturn is not installed"
        assert package.version == config.versions.coturn, (
            f"{node}: coturn {package.version} installed, stack pins {config.versions.coturn}"
        )
    elif node.role == "db":
        major = config.versions.postgresql
        assert node.host.package(f"postgresql-{major}").is_installed, f"{node}: postgresql-{major} missing"
        out = _run(node, "runuser -u postgres -- psql -XAtc 'show server_version_num'")
        assert out.strip().startswith(str(major)), f"{node}: server version {out.strip()}, pinned {major}"
    elif node.role == "redis":
        for package in ("redis-server", "redis-sentinel"):
            assert node.host.package(package).is_installed, f"{node}: {package} is not installed"
    elif node.role == "monitoring":
        # Debian's packages (the stack pins the distribution); the Prometheus that answers must be the
        # installed one (an upgraded package with the old process still running shows here).
        for package in ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter"):
            assert node.host.package(package).is_installed, f"{node}: {package} is not installed"
        read = ("import json,sys,urllib.request; print(json.load(urllib.request.urlopen("
                "sys.argv[1], timeout=10))['data']['version'])")
        url = f"http://{node.private_ip}:9090/api/v1/status/buildinfo"
        running = _run(node, f"python3 -c {shlex.quote(read)} {shlex.quote(url)}").strip()
        installed = node.host.package("prometheus").version
        upstream = installed.split(":", 1)[-1].rsplit("-", 1)[0]  # no epoch, no Debian revision
        assert running in (upstream, upstream.split("+", 1)[0]), (
            f"{node}: Prometheus {running} answers, package {installed} is installed"
        )
    else:
        pytest.fail(f"{node}: no pinned-version check for role {node.role}")


def test_ssh_hardening(node, facts):
    settings = ex.parse_sshd_t(_run(node, "sshd -T"))
    problems = ex.ssh_hardening_problems(
        settings, int(facts.get("common_ssh_max_auth_tries", 3)), ex.sshd_algorithms(facts)
    )
    assert not problems, f"{node}: sshd: " + "; ".join(problems)


def test_firewall_default_drop(node, config, inventory, facts, group_vars):
    from visio_infra.hosts.ansible_vars import firewall_rules

    ruleset = _run(node, "nft list ruleset")
    assert ex.input_policy(ruleset) == "drop", f"{node}: the input chain's policy is not drop"
    # Each allowed flow of the role's security group appears in the host ruleset.
    lines = ruleset.splitlines()
    missing = [
        f"{rule['comment']} {rule['proto']}/{rule['ports']}"
        for rule in firewall_rules(config, inventory, node.role)
        if not any(rule["proto"] in line and re.search(rf"(?<![0-9-]){rule['ports']}(?![0-9-])", line)
                   for line in lines)
    ]
    assert not missing, f"{node}: flows of the security group missing from nftables: {', '.join(missing)}"
    # Port redirects of the role's design (TURN over TLS on 5349 to coturn's 443 listener).
    variables = ex.node_variables(facts, group_vars, node.role)
    absent = [
        f"{r['proto']} {r['port']} -> {r['to_port']}"
        for r in variables.get("common_port_redirects") or []
        if not any(re.search(rf"{r['proto']} dport {int(r['port'])} redirect to :{int(r['to_port'])}\b", line)
                   for line in lines)
    ]
    assert not absent, f"{node}: port redirects missing from nftables: {', '.join(absent)}"


def _exporters(node, variables) -> dict[str, bool]:
    """Which metrics exporters the role runs on this node, by the role's own rule."""
    if node.role != "turn":
        return {}
    # turnserver prints its options and exits 255 (ssh's own failure code, hence `|| true`).
    help_text = node.host.run("turnserver --help 2>&1 || true").stdout
    return {"coturn-metrics": ex.coturn_exporter_enabled(variables.get("coturn_prometheus"), help_text)}


def test_listening_sockets_exactly_expected(node, config, inventory, facts, group_vars):
    listeners = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        text = node.host.file(f"/proc/net/{proto}").content_string
        listeners += ex.parse_proc_net(text, proto)
    variables = ex.node_variables(facts, group_vars, node.role)
    plan = ex.listener_plan(config, inventory, node.role, variables, _exporters(node, variables))
    missing, unexpected = ex.compare_listeners(listeners, plan, node.private_ip)
    assert not missing and not unexpected, (
        f"{node}: missing listeners {missing or 'none'}; unexpected listeners {unexpected or 'none'}"
    )


def test_time_synchronised(node, facts, group_vars):
    if _in_container(node):
        # The host kernel's clock: no time daemon on the node (the role removes chrony), and the
        # clock agrees with this controller's.
        assert not node.host.package(ex.TIME_SERVICE).is_installed, (
            f"{node}: {ex.TIME_SERVICE} is installed in a container, where it cannot set the clock"
        )
        before = time.time()
        remote = float(_run(node, "date +%s.%N"))
        after = time.time()
        offset = remote - (before + after) / 2
        allowed = ex.CLOCK_MAX_OFFSET_SECONDS + (after - before) / 2
        assert abs(offset) <= allowed, (
            f"{node}: clock is {offset:+.3f} s from the controller's (at most {allowed:.3f} s allowed)"
        )
        return
    variables = ex.node_variables(facts, group_vars, node.role)
    conf = node.host.file("/etc/chrony/chrony.conf").content_string
    sources = ex.chrony_sources(conf)
    assert sources == list(variables["common_ntp_pools"]), (
        f"{node}: chrony uses {sources}, the role sets {variables['common_ntp_pools']}"
    )
    foreign = describe_foreign_endpoints(conf)
    assert not foreign, f"{node}: chrony takes time from non-European services: {', '.join(foreign)}"
    tracking = _run(node, "chronyc -n tracking")
    pairs = (line.partition(":") for line in tracking.splitlines())
    fields = {key.strip(): value.strip() for key, _, value in pairs}
    assert fields.get("Leap status") == "Normal", f"{node}: chrony leap status {fields.get('Leap status')!r}"
    reference = fields.get("Reference ID", "")
    assert reference and not reference.startswith("00000000"), f"{node}: chrony has no time source"


def test_config_file_owners_and_modes(node, facts, config):
    problems = []
    for rule in ex.file_rules(node.role, facts, config):
        target = node.host.file(rule.path)
        if not target.exists:
            problems.append(f"{rule.path} is missing ({rule.why})")
            continue
        problem = ex.mode_problem(rule, target.user, target.mode)
        if problem:
            problems.append(problem)
    assert not problems, f"{node}: " + "; ".join(problems)
