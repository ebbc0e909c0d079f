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


def primary_db_host(inventory: dict[str, Any]) -> str:
    return str(inventory["groups"]["db"][0]["private_ip"])


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
    database_url = pulumi.Output.all(inventory, secrets.db_password).apply(
        lambda v: f"postgresql://{meet.database_user}:{v[1]}@{primary_db_host(v[0])}:5432/"
        f"{meet.database}?sslmode=verify-full"
    )
    pulumi.export("database_url", pulumi.Output.secret(database_url))
    meet_env = pulumi.Output.all(inventory, secrets.livekit_api_key, secrets.livekit_api_secret,
                                 secrets.db_password, secrets.redis_password).apply(
        lambda v: {
            "LIVEKIT_API_URL": endpoints(config)["livekit_api_url"],
            "LIVEKIT_API_KEY": v[1],
            "LIVEKIT_API_SECRET": v[2],
            "DB_HOST": primary_db_host(v[0]),
            "DB_PORT": "5432",
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
