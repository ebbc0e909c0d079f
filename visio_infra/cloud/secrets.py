"""Every credential of a deployment, generated in the stack (`generated_secret.GeneratedSecret`).

Generated values live only in the Pulumi state, encrypted by the stack's secrets provider (the
passphrase provider or a ministry KMS, never Pulumi Cloud), and leave it only as Pulumi secrets.
They are never written to the repository, cloud-init user data or logs. Rotating one is
`pulumi up --replace <urn>` followed by `visio configure`.
"""

from __future__ import annotations

from typing import Any

import pulumi

from visio_infra.cloud.generated_secret import GeneratedSecret
from visio_infra.model.config.stack import StackConfig

LIVEKIT_API_KEY_PREFIX = "API"
LIVEKIT_API_KEY_RANDOM_LENGTH = 12
LIVEKIT_SECRET_LENGTH = 48
"""LiveKit reports secrets shorter than 32 characters as errors; 48 leaves a margin."""
TURN_SECRET_LENGTH = 48
DB_PASSWORD_LENGTH = 32
REDIS_PASSWORD_LENGTH = 32
BACKUP_PASSPHRASE_LENGTH = 64
"""pgBackRest repository cipher passphrase (repo1-cipher-pass)."""


class StackSecrets(pulumi.ComponentResource):
    """The deployment's credentials, as secret Outputs.

    Alphanumeric only: they end up in URLs (database_url), YAML (LiveKit keys), INI (coturn
    static-auth-secret) and shell environments without any escaping problem; length gives entropy.
    """

    livekit_api_key: pulumi.Output[str]
    livekit_api_secret: pulumi.Output[str]
    turn_shared_secret: pulumi.Output[str]
    db_password: pulumi.Output[str]
    """Password of the Meet role (`meet.database_user`)."""
    db_replication_password: pulumi.Output[str]
    redis_password: pulumi.Output[str]
    backup_passphrase: pulumi.Output[str]

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("visio:secrets:StackSecrets", name, None, opts)
        self.ministry = config.ministry.slug
        child = pulumi.ResourceOptions(parent=self)

        self.livekit_api_key = pulumi.Output.secret(
            GeneratedSecret(
                f"{name}-livekit-api-key", LIVEKIT_API_KEY_RANDOM_LENGTH, prefix=LIVEKIT_API_KEY_PREFIX,
                opts=child,
            ).value
        )
        self.livekit_api_secret = self._password(f"{name}-livekit-api-secret", LIVEKIT_SECRET_LENGTH, child)
        self.turn_shared_secret = self._password(f"{name}-turn-shared-secret", TURN_SECRET_LENGTH, child)
        self.db_password = self._password(f"{name}-db-password", DB_PASSWORD_LENGTH, child)
        self.db_replication_password = self._password(
            f"{name}-db-replication-password", DB_PASSWORD_LENGTH, child
        )
        self.redis_password = self._password(f"{name}-redis-password", REDIS_PASSWORD_LENGTH, child)
        self.backup_passphrase = self._password(f"{name}-backup-passphrase", BACKUP_PASSPHRASE_LENGTH, child)

        outputs: dict[str, Any] = {
            "livekit_api_key": self.livekit_api_key,
            "livekit_api_secret": self.livekit_api_secret,
            "turn_shared_secret": self.turn_shared_secret,
            "db_password": self.db_password,
            "db_replication_password": self.db_replication_password,
            "redis_password": self.redis_password,
            "backup_passphrase": self.backup_passphrase,
        }
        self.register_outputs(outputs)

    @staticmethod
    def _password(name: str, length: int, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
        return pulumi.Output.secret(GeneratedSecret(name, length, opts=opts).value)
