#!/usr/bin/python3
"""Ensure a PostgreSQL role exists with a SCRAM-SHA-256 password, idempotently.

community.postgresql is not installed on the controller, and `ALTER ROLE ... PASSWORD` every run
would never report "ok". This module checks the stored SCRAM verifier against the wanted password
(RFC 5802/7677 maths) and only changes the role when the password or its attributes differ. It runs
psql as the local postgres superuser over the Unix socket (peer authentication).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: visio_pg_role
short_description: PostgreSQL role with a SCRAM-SHA-256 password (idempotent)
options:
  name: {type: str, required: true}
  password: {type: str, required: true, no_log: true}
  replication: {type: bool, default: false}
  port: {type: int, default: 5432}
"""

SCRAM = re.compile(r"^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$")


def scram_matches(verifier: str | None, password: str) -> bool:
    """True when the stored verifier was made from `password`."""
    match = SCRAM.match(verifier or "")
    if not match:
        return False
    iterations, salt, stored_key, server_key = match.groups()
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return (
        hmac.compare_digest(base64.b64encode(hashlib.sha256(client_key).digest()).decode(), stored_key)
        and hmac.compare_digest(base64.b64encode(server).decode(), server_key)
    )


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def psql(module: AnsibleModule, port: int, sql: str, **variables: str) -> str:
    """Run SQL given on stdin (never in argv: it may hold a password); `variables` are psql -v values."""
    cmd = ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
           "-p", str(port), "-d", "postgres", "-f", "-"]
    for key, value in variables.items():
        cmd += ["-v", f"{key}={value}"]
    proc = subprocess.run(cmd, input=sql, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # Never echo the SQL: it may hold the password.
        module.fail_json(msg=f"psql failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "replication": {"type": "bool", "default": False},
            "port": {"type": "int", "default": 5432},
        },
        supports_check_mode=True,
    )
    name, password, port = module.params["name"], module.params["password"], module.params["port"]
    replication = module.params["replication"]
    row = psql(
        module, port,
        "SELECT json_build_object('pw', rolpassword, 'login', rolcanlogin, 'repl', rolreplication)"
        " FROM pg_authid WHERE rolname = :'role';",
        role=name,
    )
    state = json.loads(row) if row else None
    reasons = []
    if state is None:
        reasons.append("created")
    else:
        if not state["login"]:
            reasons.append("login enabled")
        if bool(state["repl"]) != replication:
            reasons.append("replication attribute")
        if not scram_matches(state["pw"], password):
            reasons.append("password")
    if reasons and not module.check_mode:
        attrs = "LOGIN " + ("REPLICATION" if replication else "NOREPLICATION")
        verb = "CREATE" if state is None else "ALTER"
        psql(
            module, port,
            "SET password_encryption = 'scram-sha-256';\n"
            f"{verb} ROLE {quote_ident(name)} WITH {attrs} PASSWORD {quote_literal(password)};",
        )
    module.exit_json(changed=bool(reasons), role=name, reasons=reasons)


if __name__ == "__main__":
    main()
