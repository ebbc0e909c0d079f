"""Host configuration as a step of `pulumi up`: the Ansible site playbook, run through ansible-runner.

`HostConfiguration` is a dynamic resource whose only state is a digest of what the converge depends
on: the inventory (addresses, host keys), the stack config, the content of roles/, playbooks/ and
templates/, the certificates and the secrets (as a hash, never in clear). When the digest is
unchanged, `pulumi up` reports no change and runs no Ansible; when it changes the playbook runs on
every host, and any failed or unreachable host fails the `up` (so the next `up` runs it again).
Two exceptions keep recoveries and upgrades fast: when the only change is that some machines are new
(a lost node recreated at the same place: same name and addresses, a new machine identity such as
its SSH host key), or a role's pinned version (rolled out node by node just before), the playbook
runs on those hosts alone (`hosts_to_converge`): nothing the other hosts are configured with reads
a machine's identity or another role's version.
The secrets reach the provider as Pulumi secrets (encrypted in state) and leave it only towards
`ansible_run`, which keeps them out of logs and run artifacts.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic

from visio_infra.model.config.stack import StackConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
CONTENT_DIRS = (
    "roles",
    "playbooks",
    "templates",
    "ansible.cfg",
    "visio_infra/hosts/ansible_vars.py",
    "visio_infra/hosts/ansible_run.py",
    "visio_infra/model/apt_sources.py",
    "visio_infra/model/security_rules.py",
)
"""What the converge runs or renders its variables with: a change to any file here re-runs it."""
IGNORED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache"})
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def content_files(root: Path, paths: Iterable[str] = CONTENT_DIRS) -> list[Path]:
    files = []
    for name in paths:
        base = root / name
        candidates = base.rglob("*") if base.is_dir() else [base]
        for path in candidates:
            if (
                path.is_file()
                and not IGNORED_PARTS.intersection(path.parts)
                and not path.name.endswith(IGNORED_SUFFIXES)
            ):
                files.append(path)
    return sorted(files)


def content_digest(root: Path, dirs: Iterable[str] = CONTENT_DIRS) -> str:
    """Digest of every file's relative path, mode and bytes under the content directories."""
    digest = hashlib.sha256()
    for path in content_files(root, dirs):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(b"x" if path.stat().st_mode & 0o111 else b"-")
        digest.update(_sha256(path.read_bytes()).encode() + b"\n")
    return digest.hexdigest()


def secrets_digest(secrets: Mapping[str, Any]) -> str:
    """One hash over all secrets: it changes when any of them does and reveals none of them."""
    return _sha256(b"visio-secrets\0" + canonical(dict(secrets)))


def configuration_digest(
    *, inventory: Mapping[str, Any], config: Mapping[str, Any], content: str, secrets: str, certificates: str
) -> str:
    """The digest `HostConfiguration` compares between runs (inputs are already hashes or public)."""
    return _sha256(
        canonical(
            {
                "inventory": inventory,
                "config": config,
                "content": content,
                "secrets": secrets,
                "certificates": certificates,
            }
        )
    )


def host_identities(inventory: Mapping[str, Any]) -> dict[str, str]:
    """A hash of each machine's identity as the cloud reports it (the lab: its SSH host key), by host
    name: a new value is a new, blank machine in the same place. Empty when the cloud reports none."""
    keys = (inventory.get("connection") or {}).get("host_keys") or {}
    return {name: _sha256(canonical(key)) for name, key in sorted(keys.items())}


def without_identities(inventory: Mapping[str, Any]) -> dict[str, Any]:
    """The inventory minus the machines' identities: what the other hosts' configuration reads."""
    connection = {k: v for k, v in (inventory.get("connection") or {}).items() if k != "host_keys"}
    return {**inventory, "connection": connection}


def without_versions(config: Mapping[str, Any]) -> dict[str, Any]:
    """The stack config minus the pinned versions, which only their own role's hosts read."""
    return {key: value for key, value in config.items() if key != "versions"}


def hosts_to_converge(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str] | None:
    """The hosts an update must converge, when what changed concerns some hosts only: the machines
    replaced since the last converge, and the hosts of a role whose pinned version changed (the
    rolling upgrade has just gone through them node by node; no other role reads that version).
    None (every host) when anything else changed: hosts, addresses, the rest of the stack config,
    content, secrets or certificates. `olds` are the last successful converge's outputs, `news` the
    new inputs; outputs from before `shared_digest` existed mean every host."""
    from visio_infra.model.rollout import COMPONENT_OF_ROLE

    old_shared, old_ids = olds.get("shared_digest"), olds.get("identities")
    if not old_shared or old_shared != news.get("shared_digest") or old_ids is None:
        return None
    new_ids = news.get("identities") or {}
    if set(old_ids) != set(new_ids):
        return None
    hosts = {name for name in new_ids if old_ids[name] != new_ids[name]}
    old_versions = olds.get("versions") or {}
    new_versions = (news.get("config") or {}).get("versions") or {}
    groups = (news.get("inventory") or {}).get("groups") or {}
    for role, component in COMPONENT_OF_ROLE.items():
        if old_versions.get(component) != new_versions.get(component):
            hosts.update(host["name"] for host in groups.get(role) or [])
    return sorted(hosts) or None


def certificates_payload(certificates: Any) -> Any:
    """The certificates argument `ansible_run.converge` expects, as an Output (None without a stack CA):
    the CA and, under `nodes`, each node's own certificate and key."""
    if certificates is None:
        return None
    return pulumi.Output.secret(
        pulumi.Output.all(certificates.ca_certificate, certificates.node_certificates).apply(
            lambda values: {"ca_certificate": values[0], "nodes": values[1]}
        )
    )


def secrets_payload(secrets: Any) -> pulumi.Output[dict[str, str]]:
    """The stack's secrets under the names `ansible_vars` knows."""
    names = {
        "livekit_api_key": secrets.livekit_api_key,
        "livekit_api_secret": secrets.livekit_api_secret,
        "turn_shared_secret": secrets.turn_shared_secret,
        "redis_password": secrets.redis_password,
        "db_password": secrets.db_password,
        "db_replication_password": secrets.db_replication_password,
        "backup_cipher_pass": secrets.backup_passphrase,
    }
    keys = list(names)
    return pulumi.Output.secret(
        pulumi.Output.all(*names.values()).apply(lambda values: dict(zip(keys, values, strict=True)))
    )


def failed_hosts(hosts: Mapping[str, Any]) -> list[str]:
    """Hosts whose run recap has failures or that were unreachable (`RunResult.hosts`)."""
    return sorted(name for name, stats in hosts.items() if stats.failed or stats.unreachable)


def converge_in_process(props: Mapping[str, Any], limit: list[str] | None = None) -> dict[str, Any]:
    """Run the site playbook here (on the `limit` hosts only, when given); raise with the per-host
    recap and the failed tasks."""
    from visio_infra.hosts import ansible_run

    config = StackConfig.model_validate(props["config"])
    result = ansible_run.converge(
        config,
        props["inventory"],
        dict(props["secrets"]),
        props.get("certificates"),
        stack=props["stack"],
        limit=",".join(limit) if limit else None,
        raise_on_failure=False,
    )
    bad = failed_hosts(result.hosts)
    if not result.succeeded or bad:
        failures = "\n".join(f"  - {line}" for line in result.failures[:20])
        raise RuntimeError(
            f"host configuration failed on {', '.join(bad) or 'the run'} (rc={result.rc}, {result.status})\n"
            f"{result.summary()}\n{failures}".rstrip()
        )
    print(result.summary(), flush=True)
    return {
        "rc": result.rc,
        "changed": {name: stats.changed for name, stats in sorted(result.hosts.items())},
        "duration_seconds": round(result.duration_seconds, 1),
        "artifact_dir": str(result.artifact_dir),
    }


def rolling_upgrade_in_process(old: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    from visio_infra.hosts import rolling_upgrade

    return {"steps": rolling_upgrade.rolling_converge(old, props)}


CHILD_ACTIONS = {
    "converge": lambda payload: converge_in_process(payload["props"], payload.get("limit")),
    "rolling_upgrade": lambda payload: rolling_upgrade_in_process(payload["old"], payload["props"]),
}
"""What runs in a child process (anything that drives ansible-runner)."""


def run_in_child(action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run an Ansible-driving action in a child Python process, not in the provider's multi-threaded
    gRPC server (ansible-runner forks a pty child, which was killed there before running a task).
    The payload, secrets included, goes through a pipe (never argv or the environment); the child's
    progress lines reach `pulumi up` through our stdout."""
    with tempfile.TemporaryDirectory(prefix="visio-configure-") as scratch:
        result_file = Path(scratch) / "result.json"
        child = subprocess.run(
            [sys.executable, "-m", "visio_infra.hosts.configuration", action, str(result_file)],
            input=json.dumps(dict(payload)),
            text=True,
            check=False,
        )
        outcome = json.loads(result_file.read_text()) if result_file.exists() else None
    if child.returncode != 0 or outcome is None or "error" in outcome:
        reason = outcome["error"] if outcome and "error" in outcome else f"exit status {child.returncode}"
        raise RuntimeError(reason)
    return dict(outcome["result"])


def run_converge(props: Mapping[str, Any], limit: list[str] | None = None) -> dict[str, Any]:
    return run_in_child("converge", {"props": props, "limit": limit})


def _main(action: str, result_path: str) -> int:
    payload = json.loads(sys.stdin.read())
    try:
        outcome: dict[str, Any] = {"result": CHILD_ACTIONS[action](payload)}
    except Exception as exc:  # reported to the parent, which fails the `up` with it
        outcome = {"error": str(exc)}
    Path(result_path).write_text(json.dumps(outcome, default=str))
    return 0 if "result" in outcome else 1


class ConfigurationProvider(pulumi.dynamic.ResourceProvider):
    def _outs(self, props: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
        # Only public values: the secrets and keys stay in the (secret, encrypted) inputs.
        # `versions` lets the next update tell a version change (rolled out node by node) apart.
        return {
            "digest": props["digest"],
            "shared_digest": props.get("shared_digest"),
            "identities": props.get("identities"),
            "hosts": sorted(_hosts(props["inventory"])),
            "versions": dict(props["config"].get("versions") or {}),
            **run,
        }

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=props["stack"], outs=self._outs(props, run_converge(props)))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = olds.get("digest") != news.get("digest")
        return pulumi.dynamic.DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        # A LiveKit/coturn version change goes through the rolling upgrade first (drain one node at
        # a time, install, health gates; visio_infra/hosts/rolling_upgrade.py), then the usual converge.
        from visio_infra.hosts import rolling_upgrade

        old_config = {"versions": olds.get("versions")}
        if rolling_upgrade.version_changes(old_config, news["config"]):
            run_in_child("rolling_upgrade", {"old": {"config": old_config}, "props": news})
        only = hosts_to_converge(olds, news)
        if only:
            print(
                f"configuration: only {', '.join(only)} concerned (machines recreated, or a version rolled "
                "out on them), nothing else changed: converging them alone",
                flush=True,
            )
        return pulumi.dynamic.UpdateResult(outs=self._outs(news, run_converge(news, only)))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # configuration goes away with the hosts


def _hosts(inventory: Mapping[str, Any]) -> list[str]:
    return [host["name"] for hosts in inventory.get("groups", {}).values() for host in hosts]


class HostConfiguration(pulumi.dynamic.Resource, module="visio", name="HostConfiguration"):
    """Converges every host with the site playbook when (and only when) its digest changes."""

    digest: pulumi.Output[str]
    changed: pulumi.Output[dict]

    def __init__(
        self,
        name: str,
        *,
        config: StackConfig,
        inventory: pulumi.Input[dict],
        secrets: Any,
        certificates: Any,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        config_data = config.model_dump(mode="json")
        secrets_out = secrets_payload(secrets)
        certificates_out = certificates_payload(certificates)
        content = content_digest(PROJECT_ROOT)

        def digest_of(shared: bool) -> Any:
            return pulumi.Output.unsecret(
                pulumi.Output.all(inventory, secrets_out, certificates_out).apply(
                    lambda v: configuration_digest(
                        inventory=without_identities(v[0]) if shared else v[0],
                        config=without_versions(config_data) if shared else config_data,
                        content=content,
                        secrets=secrets_digest(v[1]),
                        certificates=_sha256(canonical(v[2])),
                    )
                )
            )

        digest, shared_digest = digest_of(False), digest_of(True)
        # A version change is rolled out on its role's hosts first (`hosts_to_converge`).
        identities = pulumi.Output.from_input(inventory).apply(host_identities)
        super().__init__(
            ConfigurationProvider(),
            name,
            {
                "stack": pulumi.get_stack(),
                "project_root": str(PROJECT_ROOT),
                "config": config_data,
                "inventory": inventory,
                "secrets": secrets_out,
                "certificates": certificates_out,
                "digest": digest,
                "shared_digest": shared_digest,
                "identities": identities,
                "hosts": None,
                "rc": None,
                "changed": None,
                "ok": None,
                "artifact_dir": None,
            },
            opts,
        )


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], sys.argv[2]))
