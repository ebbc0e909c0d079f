"""Converge the roles on the throwaway machines of tests/roles/machines.sh and check idempotency.

    tests/roles/machines.sh up lab-sfu-1=10.79.0.74 ...        (as printed by `--print-machines`)
    .venv/bin/python tests/roles/converge_live.py --livekit-binary /path/to/livekit-server
    tests/roles/machines.sh down

The stack config is the lab's, shifted to 10.79.0.0/24 (bridge vrtest0) so it never collides with
the real lab. Secrets and certificates are generated for the run and never written to the repo
(a copy for manual checks goes to /var/lib/visio-rolestest/run-secrets.json, mode 0600).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import secrets as pysecrets
import sys
import time
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from visio_infra.hosts.ansible_run import converge
from visio_infra.hosts.inventory import build_inventory
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.stack_file import parse_stack_config
from visio_infra.model.topology import plan_nodes

ROOT = Path(__file__).resolve().parents[2]
STATE = Path("/var/lib/visio-rolestest")


def test_config(livekit_version: str = "1.13.11") -> StackConfig:
    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())["config"]
    raw["visio:versions"]["livekit"] = livekit_version  # the version of the binary under test
    text = yaml.safe_dump(raw).replace("10.77.", "10.79.").replace("visio-lab0", "vrtest0")
    return parse_stack_config(yaml.safe_load(text), "rolestest (lab shifted to 10.79)")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def throwaway_pki(dns: dict[str, str], ips: dict[str, list[str]]) -> dict:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("rolestest CA")).issuer_name(_name("rolestest CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    result: dict = {"ca_certificate": ca.public_bytes(serialization.Encoding.PEM).decode()}
    for name in ("signalling", "turn", "db"):
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(dns[name])] if name in dns else []
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips[name]]
        cert = (
            x509.CertificateBuilder().subject_name(_name(dns.get(name, name))).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        result[name] = {"cert": cert.public_bytes(serialization.Encoding.PEM).decode(), "key": _pem_key(key)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--livekit-binary", default="/tmp/livekit-server")
    parser.add_argument("--livekit-version", default="1.13.11")
    parser.add_argument("--print-machines", action="store_true")
    parser.add_argument("--runs", type=int, default=2, help="converge this many times (2 = idempotency)")
    parser.add_argument("--limit")
    parser.add_argument("--tags")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--diff", action="store_true")
    parser.add_argument("--playbook", default="site.yml")
    parser.add_argument("-e", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    config = test_config(args.livekit_version)
    nodes = plan_nodes(config, config.sizing.nodes)
    if args.print_machines:
        print(" ".join(f"{n.name}={n.private_ip}" for n in nodes))
        return 0
    inventory = build_inventory(
        nodes, {n.name: str(n.private_ip) for n in nodes if n.public},
        {"user": "root", "ssh_key_file": str(STATE / "id_ed25519"), "bastion": None,
         "known_hosts_file": "/dev/null"},
    )
    saved = STATE / "run-secrets.json"
    if saved.exists():  # same secrets across runs, or the second run would change every secret
        material = json.loads(saved.read_text())
    else:
        by_role = {r: [str(n.private_ip) for n in nodes if n.role == r] for r in ("sfu", "turn", "db")}
        material = {
            "secrets": {
                "livekit_api_key": "APIrolestest",
                **{k: pysecrets.token_urlsafe(36) for k in (
                    "livekit_api_secret", "turn_shared_secret", "redis_password", "db_password",
                    "db_replication_password", "backup_cipher_pass")},
            },
            "certificates": throwaway_pki(
                {"signalling": config.domains.signalling, "turn": config.domains.turn},
                {"signalling": by_role["sfu"], "turn": by_role["turn"], "db": by_role["db"]},
            ),
        }
        fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(material, handle)

    rc = 0
    for run in range(1, args.runs + 1):
        started = time.monotonic()
        result = converge(
            config, inventory, material["secrets"], material["certificates"], stack="rolestest",
            limit=args.limit, tags=args.tags.split(",") if args.tags else None, check=args.check,
            diff=args.diff, livekit_binary=args.livekit_binary, raise_on_failure=False,
            playbook=args.playbook, extra_vars=dict(e.split("=", 1) for e in args.extra) or None,
        )
        print(result.summary())
        print(f"run {run}: {time.monotonic() - started:.1f} s, changed={result.changed}, "
              f"leaked_secrets={result.leaked_secrets}, succeeded={result.succeeded}")
        for failure in result.failures:
            print("  failure:", failure)
        if not result.succeeded or result.leaked_secrets:
            return 1
        if run > 1 and result.changed:
            print(f"NOT IDEMPOTENT: run {run} changed {result.changed} task(s)")
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
