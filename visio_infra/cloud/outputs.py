"""The stack outputs: a contract other tools and the Meet backend rely on. Keep these names.

Credentials are only ever exported as Pulumi secrets (encrypted in state, masked in output).
"""

from __future__ import annotations

from typing import Any

import pulumi

from visio_infra.model.config.stack import StackConfig
from visio_infra.model.security_rules import REDIS_SENTINEL_MASTER_NAME, SENTINEL_PORT

OUTPUT_NAMES = (
    "inventory", "livekit_url", "livekit_api_url", "turn_uris", "ca_certificate",
    "livekit_api_key", "livekit_api_secret", "turn_shared_secret", "database_url",
    "redis_password", "meet_env", "configuration_secrets", "tls_certificates",
)
"""The contract. The last two exist for `visio configure`, which re-applies the configuration from
the outputs alone: the other credentials the roles need, and the stack-issued certificates with
their keys (null when the ministry's PKI provides them as files)."""
SECRET_OUTPUTS = frozenset(
    {
        "livekit_api_key", "livekit_api_secret", "turn_shared_secret", "database_url", "redis_password",
        "meet_env", "configuration_secrets", "tls_certificates",
    }
)


def endpoints(config: StackConfig) -> dict[str, Any]:
    """Public endpoints derived from the domains (pure)."""
    turn = config.domains.turn
    return {
        "livekit_url": f"wss://{config.domains.signalling}",
        "livekit_api_url": f"https://{config.domains.signalling}",
        "turn_uris": [
            f"turn:{turn}:3478?transport=udp",
            f"turn:{turn}:3478?transport=tcp",
            f"turns:{turn}:443?transport=tcp",
            f"turns:{turn}:5349?transport=tcp",
        ],
    }


def db_hosts(inventory: dict[str, Any]) -> list[str]:
    """Every DB node's private address, in inventory order (any of them may be the Patroni leader)."""
    return [str(h["private_ip"]) for h in inventory["groups"]["db"]]


DB_CONNECT_TIMEOUT_SECONDS = 3
"""libpq gives up on an unreachable DB node after this and tries the next one."""


def database_url(user: str, password: str, hosts: list[str], database: str) -> str:
    """libpq multi-host URL that always lands on the primary (pure).

    libpq tries the hosts in turn and keeps the first that accepts writes
    (`target_session_attrs=read-write`), so after a Patroni failover a reconnecting client finds the
    new leader by itself, with no proxy in the path (one less component that can fail). The server
    certificate names every DB address, so `verify-full` holds whichever node answers.
    """
    netloc = ",".join(f"{host}:5432" for host in hosts)
    return (
        f"postgresql://{user}:{password}@{netloc}/{database}?sslmode=verify-full"
        f"&target_session_attrs=read-write&connect_timeout={DB_CONNECT_TIMEOUT_SECONDS}"
    )


def redis_sentinels(inventory: dict[str, Any]) -> str:
    """The Sentinels Meet asks for the current Redis master: "ip:port,ip:port,..." (pure)."""
    return ",".join(f"{h['private_ip']}:{SENTINEL_PORT}" for h in inventory["groups"].get("redis") or [])


def export_all(config: StackConfig, inventory: Any, secrets: Any, certificates: Any) -> None:
    """Export every output of the contract."""
    for name, value in endpoints(config).items():
        pulumi.export(name, value)
    pulumi.export("inventory", inventory)
    pulumi.export("ca_certificate", certificates.ca_certificate if certificates is not None else None)
    pulumi.export("livekit_api_key", pulumi.Output.secret(secrets.livekit_api_key))
    pulumi.export("livekit_api_secret", pulumi.Output.secret(secrets.livekit_api_secret))
    pulumi.export("turn_shared_secret", pulumi.Output.secret(secrets.turn_shared_secret))
    pulumi.export("redis_password", pulumi.Output.secret(secrets.redis_password))
    meet = config.meet
    database_url_ = pulumi.Output.all(inventory, secrets.db_password).apply(
        lambda v: database_url(meet.database_user, v[1], db_hosts(v[0]), meet.database)
    )
    pulumi.export("database_url", pulumi.Output.secret(database_url_))
    meet_env = pulumi.Output.all(inventory, secrets.livekit_api_key, secrets.livekit_api_secret,
                                 secrets.db_password, secrets.redis_password).apply(
        lambda v: {
            "LIVEKIT_API_URL": endpoints(config)["livekit_api_url"],
            "LIVEKIT_API_KEY": v[1],
            "LIVEKIT_API_SECRET": v[2],
            # libpq host list (PGHOST syntax): the client keeps the one that accepts writes.
            "DB_HOST": ",".join(db_hosts(v[0])),
            "DB_PORT": "5432",
            "DB_TARGET_SESSION_ATTRS": "read-write",
            "DATABASE_URL": database_url(meet.database_user, v[3], db_hosts(v[0]), meet.database),
            "DB_NAME": meet.database,
            "DB_USER": meet.database_user,
            "DB_PASSWORD": v[3],
            # Redis through its Sentinels (same password for Sentinel and Redis): Meet follows the
            # master across a failover, as LiveKit does.
            "REDIS_SENTINEL_HOSTS": redis_sentinels(v[0]),
            "REDIS_SENTINEL_MASTER_NAME": REDIS_SENTINEL_MASTER_NAME,
            "REDIS_SENTINEL_PASSWORD": v[4],
            "REDIS_PASSWORD": v[4],
        }
    )
    pulumi.export("meet_env", pulumi.Output.secret(meet_env))
    pulumi.export(
        "configuration_secrets",
        pulumi.Output.secret(
            pulumi.Output.all(secrets.db_replication_password, secrets.backup_passphrase).apply(
                lambda v: {"db_replication_password": v[0], "backup_cipher_pass": v[1]}
            )
        ),
    )
    from visio_infra.hosts.configuration import certificates_payload

    pulumi.export("tls_certificates", pulumi.Output.secret(certificates_payload(certificates)))
