"""`visio configure <stack>`: re-apply host configuration from the stack's outputs, no infra change.

    visio configure lab
    visio configure interieur --limit sfu --tags livekit --check --diff
    visio configure lab --playbook restore-db.yml -e postgresql_restore_mode=cleanup

Reads the stack config (stacks/Pulumi.<stack>.yaml) and the stack's outputs through the Pulumi CLI
(`pulumi stack output --json --show-secrets`, state from PULUMI_BACKEND_URL), then runs the site
playbook through `ansible_run.converge`. Secret values are passed to Ansible in a temporary 0600
file and never printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from visio_infra.hosts.ansible_run import AnsibleRunError, converge
from visio_infra.hosts.ansible_vars import AnsibleVarsError
from visio_infra.model.config.base import StackConfigError
from visio_infra.model.stack_file import load_stack_file, stack_file

SECRET_OUTPUTS = {
    "livekit_api_key": "livekit_api_key",
    "livekit_api_secret": "livekit_api_secret",
    "turn_shared_secret": "turn_shared_secret",
    "redis_password": "redis_password",
    "db_replication_password": "db_replication_password",
}
"""Stack output name -> secret name expected by `ansible_vars.secret_vars`."""


class ConfigureError(RuntimeError):
    """The stack's outputs do not hold what a converge needs."""


def secrets_from_outputs(outputs: Mapping[str, Any]) -> dict[str, str]:
    """The converge secrets from the stack outputs (pure; raises naming the missing outputs only)."""
    found: dict[str, str] = {}
    for output, name in SECRET_OUTPUTS.items():
        value = outputs.get(output)
        if isinstance(value, str) and value:
            found[name] = value
    meet_env = outputs.get("meet_env")
    if isinstance(meet_env, Mapping) and meet_env.get("DB_PASSWORD"):
        found["db_password"] = str(meet_env["DB_PASSWORD"])
    extra = outputs.get("configuration_secrets")
    if isinstance(extra, Mapping):  # optional bundle (backup credentials, replication password...)
        found.update({str(k): str(v) for k, v in extra.items() if v})
    missing = [name for name in (*SECRET_OUTPUTS.values(), "db_password") if name not in found]
    if missing:
        raise ConfigureError(
            "the stack outputs lack these secrets: " + ", ".join(sorted(missing))
            + "; run `pulumi up` for this stack first (it creates and exports them)"
        )
    return found


def certificates_from_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Certificates for the roles: the `tls_certificates` secret output (the CA, and every node's own
    certificate and key)."""
    bundle = outputs.get("tls_certificates")
    if not isinstance(bundle, Mapping):
        raise ConfigureError(
            "the stack has no `tls_certificates` output (CA and node certificates with their keys); "
            "run `pulumi up` for this stack first"
        )
    certificates = dict(bundle)
    certificates.setdefault("ca_certificate", outputs.get("ca_certificate"))
    return certificates


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="visio configure", description="Re-apply the Ansible configuration of a stack's hosts."
    )
    parser.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("--limit", help="only these hosts or groups (Ansible pattern, e.g. sfu or lab-sfu-1)")
    parser.add_argument("--tags", help="only these role tags, comma-separated (e.g. livekit,firewall)")
    parser.add_argument("--check", action="store_true", help="dry run: report what would change")
    parser.add_argument("--diff", action="store_true", help="show file differences (never secret files)")
    parser.add_argument("--livekit-binary", help="livekit-server file to install (default: toolchain build)")
    parser.add_argument("--playbook", default="site.yml", help="playbook in playbooks/ (e.g. restore-db.yml)")
    parser.add_argument("-e", "--extra-var", action="append", default=[], metavar="KEY=VALUE",
                        help="extra variable for the playbook (never a secret; repeatable)")
    return parser.parse_args(argv)


def extra_vars(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` strings to a dict (pure)."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigureError(f"-e {pair!r}: expected KEY=VALUE")
        result[key] = value
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from visio_infra.commands.stack_outputs import StackOutputsError, read_outputs

    try:
        config = load_stack_file(stack_file(args.stack))
        outputs = read_outputs(args.stack, show_secrets=True)
        inventory = outputs.get("inventory")
        if not isinstance(inventory, Mapping):
            raise ConfigureError(f"stack '{args.stack}' has no `inventory` output; run `pulumi up` first")
        result = converge(
            config,
            inventory,
            secrets_from_outputs(outputs),
            certificates_from_outputs(outputs),
            stack=args.stack,
            limit=args.limit,
            tags=args.tags.split(",") if args.tags else None,
            check=args.check,
            diff=args.diff,
            livekit_binary=args.livekit_binary,
            playbook=args.playbook,
            extra_vars=extra_vars(args.extra_var),
        )
    except (StackConfigError, StackOutputsError, ConfigureError, AnsibleVarsError) as exc:
        print(f"visio configure: {exc}", file=sys.stderr)
        return 2
    except AnsibleRunError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(result.summary())
    return 0
