"""The smaller sections: `ministry`, `versions`, `domains`, `tls`, `meet`, `monitoring`, `hosts`,
`upgrade`."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from visio_infra.model.config.base import _Model
from visio_infra.model.config.field_checks import _check_sovereign

MIN_LIVEKIT_VERSION = (1, 10, 0)
"""LiveKit hands out coturn REST credentials from a shared secret soundly only from v1.10 on."""

FORBIDDEN_LIVEKIT_VERSIONS = {(1, 9, 10)}
"""Releases that must never be deployed (see shared/REFERENCE.md)."""


def _version_tuple(text: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"'{text}' is not a version like 1.13.11")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


class Ministry(_Model):
    """Who this deployment is for."""

    slug: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,23}$")]
    """Short lowercase name used in resource names and tags (e.g. `interieur`)."""
    name: Annotated[str, Field(min_length=3)]
    """Display name (e.g. `Ministère de l'Intérieur`)."""


class Versions(_Model):
    """Pinned component versions. Changing one triggers a rolling upgrade."""

    livekit: str
    coturn: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+(-[0-9A-Za-z.+~]+)?$")] = "4.6.1-1"
    """Debian package version of coturn."""
    postgresql: Annotated[int, Field(ge=15, le=15)] = 15
    """PostgreSQL major version (Debian 12 ships 15)."""

    @field_validator("livekit")
    @classmethod
    def _livekit(cls, value: str) -> str:
        version = _version_tuple(value)
        if version in FORBIDDEN_LIVEKIT_VERSIONS:
            raise ValueError(
                f"LiveKit {value} is a known-bad release that must not be deployed; use 1.13.11 or later"
            )
        if version < MIN_LIVEKIT_VERSION:
            floor = ".".join(map(str, MIN_LIVEKIT_VERSION))
            raise ValueError(
                f"LiveKit {value} is below the supported floor {floor} (TURN shared-secret support); "
                "use 1.13.11 or later"
            )
        return value.lstrip("v")


class Domains(_Model):
    """Public names. Certificates are issued for these."""

    signalling: Annotated[
        str, Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
    ]
    """LiveKit signalling name, served over TLS on 443 (wss://<signalling>)."""
    turn: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")]
    """TURN name (turns:<turn>:443)."""

    @model_validator(mode="after")
    def _distinct(self) -> Domains:
        if self.signalling == self.turn:
            raise ValueError(
                f"turn: '{self.turn}' is also the signalling name; SFU and TURN both serve TLS on 443 from "
                "different addresses, give each its own name (e.g. sfu.<zone> and turn.<zone>)"
            )
        return self


class Tls(_Model):
    """Where service certificates come from."""

    source: Literal["stack-ca", "files"]
    """`stack-ca`: the stack issues its own CA and certificates (lab, internal PKI bootstrap);
    `files`: certificates from the ministry's PKI, given as paths on the operator's machine."""
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None

    @model_validator(mode="after")
    def _files(self) -> Tls:
        if self.source == "files" and not (self.cert_file and self.key_file):
            missing = "cert_file" if not self.cert_file else "key_file"
            raise ValueError(f"{missing}: source 'files' needs cert_file and key_file (paths to PEM files)")
        if self.source == "stack-ca" and (self.cert_file or self.key_file or self.ca_file):
            raise ValueError("source: cert_file/key_file/ca_file are only used with source 'files'")
        return self


class Meet(_Model):
    """The Meet (La Suite numérique) backend this SFU serves."""

    webhook_url: Annotated[str, Field(pattern=r"^https://[^\s/]+/.*$")] | None = None
    """LiveKit webhooks target, e.g. https://visio.example.gouv.fr/api/v1.0/rooms/webhooks-livekit/"""
    database: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "meet"
    database_user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "meet"

    @field_validator("webhook_url")
    @classmethod
    def _sovereign_webhook(cls, url: str | None) -> str | None:
        if url is not None:
            _check_sovereign(url)
        return url


class Monitoring(_Model):
    """Where the stack's metrics, alerts and dashboard live.

    Metrics never leave for a non-European service: the remote-write and alert webhook endpoints go
    through the same sovereignty check as every other URL of the stack.
    """

    prometheus: Literal["node", "external"] = "node"
    """`node` (default): a monitoring node of the stack runs Prometheus, Alertmanager, the blackbox
    probes and the dashboard, scraping every node. `external`: no such node; the ministry's own
    Prometheus scrapes the exporters from `network.monitoring_cidr` and loads the project's rules
    (roles/monitoring/files/rules)."""
    remote_write_url: Annotated[str, Field(pattern=r"^https://[^\s/]+(/.*)?$")] | None = None
    """The ministry's long-term store (Prometheus remote write), e.g. https://metrics.example.gouv.fr/api/v1/write."""
    alert_webhook_url: Annotated[str, Field(pattern=r"^https://[^\s/]+(/.*)?$")] | None = None
    """Where Alertmanager sends alerts (the ministry's own alerting); none: alerts show in its UI only."""

    @field_validator("remote_write_url", "alert_webhook_url")
    @classmethod
    def _sovereign_endpoint(cls, url: str | None) -> str | None:
        if url is not None:
            _check_sovereign(url)
        return url

    @property
    def node_count(self) -> int:
        """Monitoring nodes this setting implies."""
        return 1 if self.prometheus == "node" else 0


class Hosts(_Model):
    """How `pulumi up` treats the machines once they exist."""

    configure_on_up: bool = True
    """Run the Ansible host configuration as the last step of `pulumi up`. `false`: provisioning
    only; `pulumi up` creates and exports everything (inventory, secrets, certificates) and
    `visio configure <stack>` configures the hosts later (a separate change window, or servers that
    cannot be reached from where `pulumi up` runs). The lab always configures."""


class Upgrade(_Model):
    """Rolling upgrade behaviour."""

    drain_deadline_seconds: Annotated[int, Field(gt=0)] = 3600
    """How long to wait for a draining node to empty before stopping the rollout."""
    min_serving: Annotated[int, Field(ge=1)] = 1
    """Never leave fewer serving nodes of a role than this during a rollout."""
