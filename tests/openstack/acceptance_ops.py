"""What the acceptance tests do the way a platform engineer does it: drive the real Pulumi CLI on the
`acceptance` stack, and read the cloud back through openstacksdk (never through Pulumi).

Pure helpers (rule tuples, state/cloud comparison) are kept apart from the I/O so they can be read
on their own: a failing check names the resource and what differs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
STACK = "acceptance"
CLOUD = "visio-acceptance"
ADMIN_CLOUD = "visio-acceptance-admin"
STACK_FILE = ROOT / "stacks" / f"Pulumi.{STACK}.yaml"

PULUMI = 'source scripts/pulumi-env.sh >/dev/null && exec pulumi "$@"'
"""The pinned CLI with this checkout's toolchain and local file state (scripts/pulumi-env.sh)."""


def nova_quotas(extra_sfu: int = 0) -> dict[str, int]:
    """The Nova quotas the acceptance stack needs (servers, vCPU, RAM of its plan, with `extra_sfu` more
    SFU nodes), never below Nova's defaults: what a ministry asks its cloud team for. The test
    cloud's project starts at the defaults (10 instances, 20 cores), which the HA node counts exceed."""
    from visio_infra.model import pricing
    from visio_infra.model.sizing.plan import plan
    from visio_infra.model.stack_file import load_stack_file

    config = load_stack_file(STACK_FILE)
    sizing = plan(config)
    table = pricing.offer(config.cloud.offer)  # type: ignore[union-attr]
    counts = {**sizing.counts, "sfu": sizing.counts["sfu"] + extra_sfu}
    flavors = {role: table.flavor(sizing.flavors[role]) for role, n in counts.items() if n}
    return {
        "instances": max(10, sum(counts.values())),
        "cores": max(20, sum(n * flavors[role].vcpu for role, n in counts.items() if n)),
        "ram": max(51200, sum(n * flavors[role].ram_gib * 1024 for role, n in counts.items() if n)),
    }


NEUTRON_DEFAULTS = {"security_group": 10, "security_group_rule": 100}
"""Neutron's default per-project quotas for what the stack's firewall needs."""


def neutron_quotas() -> dict[str, int]:
    """The Neutron quotas the acceptance stack needs: its security groups and their rules (with the
    default egress rules Neutron adds to each new group until the program deletes them, and the
    project's own `default` group), never below Neutron's defaults. Six roles' exact allow-lists are
    more than Neutron's 100 default rules: a ministry asks its cloud team for this figure, which
    `visio cloud-check` prints."""
    from visio_infra.model.cloud_needs import NEUTRON_DEFAULT_EGRESS_RULES, needs
    from visio_infra.model.sizing.plan import plan
    from visio_infra.model.stack_file import load_stack_file

    config = load_stack_file(STACK_FILE)
    need = needs(config, plan(config), source=str(STACK_FILE))
    default_group_rules = 4  # the project's `default` group: two ingress, two egress
    return {
        "security_group": max(NEUTRON_DEFAULTS["security_group"], need.security_groups + 1),
        "security_group_rule": max(
            NEUTRON_DEFAULTS["security_group_rule"],
            need.security_group_rules
            + NEUTRON_DEFAULT_EGRESS_RULES * need.security_groups
            + default_group_rules,
        ),
    }


def set_neutron_quotas(admin: Any, project: str) -> None:
    """Raise the project's Neutron quotas to `neutron_quotas()` (as the cloud admin)."""
    admin.network.put(f"/quotas/{project}", json={"quota": neutron_quotas()}).raise_for_status()


def reset_neutron_quotas(admin: Any, project: str) -> None:
    """Neutron's defaults again for the project."""
    admin.network.delete(f"/quotas/{project}").raise_for_status()


def openstack_dir() -> Path:
    return Path(os.environ.get("VISIO_OPENSTACK_DIR") or Path.home() / ".cache" / "visio-openstack")


def clouds_file() -> Path:
    return openstack_dir() / "clouds.yaml"


# --- the Pulumi CLI --------------------------------------------------------------------------------


@dataclass
class Run:
    """One CLI run: exit status, what it printed (stdout then stderr when split), wall time."""

    rc: int
    output: str
    seconds: float
    stderr: str = ""


class PulumiCli:
    """`pulumi` on the acceptance stack, from the repository root, with a private stack config.

    `pulumi stack init` writes the passphrase provider's salt into the stack's config file; the
    committed stacks/Pulumi.acceptance.yaml must not change, so the stack is created from a private
    project directory and every command passes `--config-file` with that private copy (the committed
    file plus the salt, or an override such as one more SFU node). `pulumi stack rm` deletes the
    stack's default config file, the committed one here: it always runs with `--preserve-config`.
    """

    def __init__(self, private: Path, env: Mapping[str, str]):
        self.private = private
        self.env = dict(env)
        self.config_file = private / "stacks" / f"Pulumi.{STACK}.yaml"

    def command(
        self, *args: str, config_file: Path | None = None, with_config: bool = True, timeout: float = 1800,
        echo: bool = True, split_stderr: bool = False,
    ) -> Run:
        """`pulumi <args> --stack acceptance`, with the private config (or `config_file`) when the
        command takes one."""
        config = ["--config-file", str(config_file or self.config_file)] if with_config else []
        argv = ["bash", "-c", PULUMI, "pulumi", *args, "--stack", STACK, "--color", "never", *config]
        return run(argv, env=self.env, timeout=timeout, echo=echo, split_stderr=split_stderr)

    def stack_exists(self) -> bool:
        done = run(["bash", "-c", PULUMI, "pulumi", "stack", "ls", "--json"], env=self.env, timeout=120,
                   echo=False, split_stderr=True)
        assert done.rc == 0, f"pulumi stack ls failed: {done.stderr[-2000:]}"
        return any(s.get("name") in (STACK, f"organization/visio/{STACK}") for s in json.loads(done.output))

    def init(self) -> None:
        """Create the stack from the private project directory (the salt lands in the private copy)."""
        self.write_config(salt=None)
        (self.private / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
        done = run(
            ["bash", "-c", f'source "{ROOT}/scripts/pulumi-env.sh" >/dev/null && exec pulumi "$@"', "pulumi",
             "stack", "init", STACK, "--secrets-provider", "passphrase", "--no-select"],
            env=self.env, timeout=120, cwd=self.private,
        )
        assert done.rc == 0, f"pulumi stack init {STACK} failed:\n{done.output[-3000:]}"
        assert self.salt(), f"pulumi stack init wrote no encryptionsalt into {self.config_file}"

    def salt(self) -> str | None:
        if not self.config_file.exists():
            return None
        document = yaml.safe_load(self.config_file.read_text(encoding="utf-8")) or {}
        return document.get("encryptionsalt")

    def write_config(self, salt: str | None, path: Path | None = None, **sections: Any) -> Path:
        """The committed stack config (with `sections` merged into their `visio:` keys) plus the salt."""
        document = yaml.safe_load(STACK_FILE.read_text(encoding="utf-8"))
        for section, value in sections.items():
            key = f"visio:{section}"
            document["config"][key] = _merge(document["config"].get(key), value)
        if salt:
            document["encryptionsalt"] = salt
        target = path or self.config_file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
        target.chmod(0o600)
        return target

    def export(self) -> dict[str, Any]:
        done = self.command("stack", "export", with_config=False, echo=False, split_stderr=True, timeout=300)
        assert done.rc == 0, f"pulumi stack export failed: {done.stderr[-2000:]}"
        return dict(json.loads(done.output)["deployment"])

    def outputs(self) -> dict[str, Any]:
        done = self.command("stack", "output", "--json", with_config=False, echo=False, split_stderr=True)
        assert done.rc == 0, f"pulumi stack output failed: {done.stderr[-2000:]}"
        return dict(json.loads(done.output))


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in override.items()}}
    return override


def run(
    argv: list[str], *, env: Mapping[str, str], timeout: float, echo: bool = True, split_stderr: bool = False,
    cwd: Path = ROOT,
) -> Run:
    """Run a command, echo its output as it comes (the engineer's view), return what it printed."""
    started = time.monotonic()
    if split_stderr:
        done = subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout,
                              check=False)
        if echo:
            sys.stdout.write(done.stderr)
        return Run(done.returncode, done.stdout, time.monotonic() - started, done.stderr)
    process = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    assert process.stdout is not None
    lines = []
    deadline = started + timeout
    for line in process.stdout:
        if echo:
            sys.stdout.write(line)
        lines.append(line)
        if time.monotonic() > deadline:
            process.kill()
            lines.append(f"\n[acceptance] killed after {timeout:.0f} s\n")
            break
    rc = process.wait()
    return Run(rc, "".join(lines), time.monotonic() - started)


def preview_steps(output: str) -> list[dict[str, Any]]:
    """The steps of `pulumi preview --json` (one per resource: op, urn, type, diffs)."""
    return list(json.loads(output).get("steps") or [])


# --- the state ------------------------------------------------------------------------------------

STATE_KINDS: dict[str, str] = {
    "openstack:compute/instance:Instance": "servers",
    "openstack:networking/port:Port": "ports",
    "openstack:networking/routerInterface:RouterInterface": "ports",  # its ID is the interface's port
    "openstack:blockstorage/volume:Volume": "volumes",
    "openstack:networking/floatingIp:FloatingIp": "floating IPs",
    "openstack:networking/secGroup:SecGroup": "security groups",
    "openstack:networking/secGroupRule:SecGroupRule": "security group rules",
    "openstack:networking/network:Network": "networks",
    "openstack:networking/subnet:Subnet": "subnets",
    "openstack:networking/router:Router": "routers",
    "openstack:compute/serverGroup:ServerGroup": "server groups",
    "openstack:compute/keypair:Keypair": "key pairs",
    "openstack:compute/volumeAttach:VolumeAttach": "volume attachments",
}
"""Cloud resources the program creates, by kind: what the state and the cloud are compared on."""


def state_ids(deployment: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Kind -> {cloud ID: URN} of every live resource the state holds."""
    found: dict[str, dict[str, str]] = {kind: {} for kind in set(STATE_KINDS.values())}
    for resource in deployment.get("resources") or []:
        kind = STATE_KINDS.get(resource.get("type", ""))
        if kind and not resource.get("delete") and resource.get("id"):
            found[kind][str(resource["id"])] = resource["urn"]
    return found


def pending_operations(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Operations an interrupted update left in flight: [{type, urn, kind of operation, inputs}]."""
    return [
        {"urn": op["resource"]["urn"], "type": op["resource"]["type"], "operation": op.get("type"),
         "inputs": op["resource"].get("inputs") or {}}
        for op in deployment.get("pending_operations") or []
    ]


def differences(state: Mapping[str, Mapping[str, str]], cloud: Mapping[str, Mapping[str, str]]) -> list[str]:
    """One line per resource only in the cloud (orphaned) or only in the state (lost), by kind."""
    lines = []
    for kind in sorted(set(state) | set(cloud)):
        in_state, in_cloud = state.get(kind, {}), cloud.get(kind, {})
        lines += [f"{kind}: {in_cloud[i]} ({i}) is in the cloud but not in the state" for i in
                  sorted(set(in_cloud) - set(in_state))]
        lines += [f"{kind}: {in_state[i]} ({i}) is in the state but not in the cloud" for i in
                  sorted(set(in_state) - set(in_cloud))]
    return lines


# --- the cloud, read back -------------------------------------------------------------------------

NEUTRON_OWNED_PORTS = ("network:dhcp",)
"""Ports Neutron creates and deletes by itself for a subnet (not the program's)."""


def cloud_ids(conn: Any) -> dict[str, dict[str, str]]:
    """Kind -> {ID: name} of everything in the project the program could have created (Neutron's own
    `default` security group, its rules and its DHCP ports aside)."""
    project = conn.current_project_id
    groups = [g for g in conn.network.security_groups(project_id=project) if g.name != "default"]
    group_ids = {g.id for g in groups}
    ports = [p for p in conn.network.ports(project_id=project) if p.device_owner not in NEUTRON_OWNED_PORTS]
    servers = list(conn.compute.servers(details=True))
    return {
        "servers": {s.id: s.name for s in servers},
        "ports": {p.id: p.name or f"{p.device_owner} port" for p in ports},
        "volumes": {v.id: v.name for v in conn.block_storage.volumes(details=True)},
        "floating IPs": {f.id: f.floating_ip_address for f in conn.network.ips(project_id=project)},
        "security groups": {g.id: g.name for g in groups},
        "security group rules": {
            r.id: f"rule of {r.security_group_id}"
            for r in conn.network.security_group_rules(project_id=project)
            if r.security_group_id in group_ids
        },
        "networks": {n.id: n.name for n in conn.network.networks(project_id=project)},
        "subnets": {n.id: n.name for n in conn.network.subnets(project_id=project)},
        "routers": {r.id: r.name for r in conn.network.routers(project_id=project)},
        "server groups": {g.id: g.name for g in conn.compute.server_groups()},
        "key pairs": {k.name: k.name for k in conn.compute.keypairs()},
        "volume attachments": {
            f"{a['server_id']}/{a['volume_id']}": a["volume_id"]
            for v in conn.block_storage.volumes(details=True) for a in v.attachments or []
        },
    }


def leftovers(conn: Any) -> list[str]:
    """Everything of the project still in the cloud, one line each (empty when the project is clean)."""
    return [f"{kind}: {name} ({i})" for kind, found in sorted(cloud_ids(conn).items()) for i, name in
            sorted(found.items())]


def volume_attach_ids(deployment: Mapping[str, Any]) -> dict[str, str]:
    """VolumeAttach IDs in the state are `<server>/<attachment>`; the cloud knows `<server>/<volume>`."""
    found = {}
    for resource in deployment.get("resources") or []:
        attach = resource.get("type") == "openstack:compute/volumeAttach:VolumeAttach"
        if attach and not resource.get("delete"):
            outputs = resource.get("outputs") or {}
            found[f"{outputs.get('instanceId')}/{outputs.get('volumeId')}"] = resource["urn"]
    return found


def comparable_state(deployment: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    ids = state_ids(deployment)
    ids["volume attachments"] = volume_attach_ids(deployment)
    return ids


# --- security rules -------------------------------------------------------------------------------

RuleTuple = tuple[str, str, str | None, int | None, int | None, str | None, str | None]
"""(direction, ethertype, protocol, port_min, port_max, remote CIDR, remote role)."""

WORLD = {"IPv4": "0.0.0.0/0", "IPv6": "::/0"}


def declared_rules(rules: Iterable[Any]) -> set[RuleTuple]:
    """`security_rules.Rule`s as tuples (the world written as the family's /0)."""
    return {
        (r.direction, r.ethertype, r.protocol, r.port_min, r.port_max, r.remote_cidr, r.remote_role)
        for r in rules
    }


def cloud_rule(rule: Any, role_of_group: Mapping[str, str]) -> RuleTuple:
    """A Neutron rule as a tuple. Neutron answers "no prefix" for the whole family: written as /0 so it
    compares with the declared rule (the program declares the /0, which Neutron may store as none)."""
    remote_cidr = rule.remote_ip_prefix
    if remote_cidr is None and rule.remote_group_id is None:
        remote_cidr = WORLD[rule.ether_type]
    remote_role = role_of_group.get(rule.remote_group_id) if rule.remote_group_id else None
    if rule.remote_group_id and remote_role is None:
        remote_role = f"foreign group {rule.remote_group_id}"
    return (rule.direction, rule.ether_type, rule.protocol, rule.port_range_min, rule.port_range_max,
            remote_cidr, remote_role)


def role_of_group_name(name: str, slug: str) -> str | None:
    match = re.fullmatch(rf"visio-{re.escape(slug)}-([a-z]+)", name)
    return match.group(1) if match else None


@dataclass
class Timings:
    """Seconds of each lifecycle step, recorded as JUnit properties for scripts/bench.sh."""

    values: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> float:
        self.values[name] = round(seconds, 1)
        print(f"ACCEPTANCE-TIMING {name}={self.values[name]}", flush=True)
        return self.values[name]
