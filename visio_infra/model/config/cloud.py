"""`visio:cloud`: where the stack runs, a sovereign OpenStack region or the local lab, and
where every node takes its packages and its time from.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from visio_infra.model import pricing
from visio_infra.model.config.base import ROLES, IPv4Net, _Model
from visio_infra.model.config.field_checks import _check_sovereign, _mirror_url, _ntp_servers, ssh_key_problem

DEFAULT_NTP_SERVERS: tuple[str, ...] = ("0.fr.pool.ntp.org", "1.fr.pool.ntp.org", "2.fr.pool.ntp.org")
"""The French zone of the NTP Pool (volunteers' servers), when a ministry names no NTP servers."""


class Flavors(_Model):
    """OpenStack flavor per role. When a role is absent, sizing picks from the price table."""

    sfu: str | None = None
    turn: str | None = None
    db: str | None = None
    redis: str | None = None
    bastion: str | None = None
    monitoring: str | None = None


class _NodeSources(_Model):
    """Where every node takes its packages and its time from: the same keys for every cloud kind."""

    package_mirror: str | None = None
    """Debian mirror the nodes use; the lab may leave it out to use this host's apt sources."""
    security_mirror: str | None = None
    """Debian security mirror (bookworm-security); default: the package mirror's `-security`
    sibling (http://miroir.interieur.gouv.fr/debian -> .../debian-security)."""
    ntp_servers: list[str] = Field(default_factory=lambda: list(DEFAULT_NTP_SERVERS))
    """Time sources of the nodes' chrony (usually the ministry's own NTP servers). The lab's
    containers share the host's clock and run no chrony."""

    @field_validator("package_mirror", "security_mirror")
    @classmethod
    def _mirror(cls, url: str | None) -> str | None:
        return None if url is None else _mirror_url(url)

    @field_validator("ntp_servers")
    @classmethod
    def _ntp(cls, servers: list[str]) -> list[str]:
        return _ntp_servers(servers)


class OpenStackCloud(_NodeSources):
    """A sovereign OpenStack region (private cloud, Nubo, a SecNumCloud public region...)."""

    kind: Literal["openstack"]
    package_mirror: str
    """The ministry's own Debian mirror, e.g. `package_mirror: http://miroir.interieur.gouv.fr/debian`
    under visio:cloud; the repository names no public mirror"""
    offer: Annotated[str, Field(min_length=2)]
    """Which price table in `visio_infra.model.pricing` applies (e.g. `nubo`, `interieur-pi`, `outscale`)."""
    cloud: str | None = None
    """Entry in clouds.yaml (OS_CLOUD); give this or `auth_url`."""
    auth_url: str | None = None
    region: Annotated[str, Field(min_length=1)]
    external_network: Annotated[str, Field(min_length=1)]
    image: Annotated[str, Field(min_length=1)]
    """Glance image name of a Debian 12 image."""
    availability_zones: Annotated[list[str], Field(min_length=1)]
    flavors: Flavors = Flavors()
    encrypted_volume_type: Annotated[str, Field(min_length=1)]
    """Cinder volume type with encryption at rest, for every volume: boot volumes (they hold each
    node's secrets) and DB data volumes."""
    dns_zone: Annotated[str, Field(min_length=3)]
    ssh_public_keys: Annotated[list[str], Field(min_length=1)]
    """Operators' SSH public keys, installed for the admin user through cloud-init."""
    server_group_max_members: Annotated[int, Field(ge=2, le=1000)] = 10
    """Most servers Nova accepts in one server group (its `server_group_members` quota, 10 by
    default). A role with more nodes is split into several strict anti-affinity groups."""
    boot_from: Literal["volume", "image"] = "volume"
    """What servers boot from. `volume`: a Cinder boot volume copied from the image. `image`: the
    flavor's local disk, no boot volume (offers that boot servers from local disk, or a volume
    backend that cannot copy images). DB data volumes stay on `encrypted_volume_type` either way.
    Chosen when the stack is created: switching it on a stack with servers plans a replacement of
    every server, which Nova refuses on their ports still in use, so the `up` stops at the first one
    with nothing deleted (`visio_infra.cloud.openstack.node.REBUILD`); rebuild nodes one at a time instead."""
    local_disk_encrypted: bool = False
    """`boot_from: image` puts each node's secrets on the hypervisor's local disk, outside Cinder's
    encryption: allowed only when the cloud encrypts local disks at rest and its qualification says
    so (set true then). The policy pack refuses a local-disk server without it."""

    @model_validator(mode="after")
    def _local_disk(self) -> OpenStackCloud:
        if self.boot_from == "image" and not self.local_disk_encrypted:
            raise ValueError(
                "booting from the image (boot_from: image) keeps every node's secrets on the hypervisor's "
                "local disk: set local_disk_encrypted: true only if the cloud encrypts local disks at rest, "
                "or use boot_from: volume (encrypted boot volumes)"
            )
        return self

    @model_validator(mode="after")
    def _auth(self) -> OpenStackCloud:
        if not self.cloud and not self.auth_url:
            raise ValueError("give `cloud` (a clouds.yaml entry) or `auth_url`")
        if self.cloud and self.auth_url:
            raise ValueError("give either `cloud` or `auth_url`, not both")
        return self

    @field_validator("ssh_public_keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        problems = [p for p in (ssh_key_problem(k) for k in keys) if p]
        if len(set(keys)) != len(keys):
            problems.append("the same key is listed twice")
        if problems:
            raise ValueError("; ".join(problems))
        return keys

    @field_validator("offer")
    @classmethod
    def _offer(cls, name: str) -> str:
        known = sorted(o for o in pricing.OFFERS if o != "lab")
        if name not in known:
            raise ValueError(f"unknown offer '{name}'; known offers (price tables): {', '.join(known)}")
        return name

    @field_validator("availability_zones")
    @classmethod
    def _zones(cls, zones: list[str]) -> list[str]:
        if len(set(zones)) != len(zones) or not all(zones):
            raise ValueError("availability zones must be distinct, non-empty names")
        return zones

    @field_validator("auth_url")
    @classmethod
    def _auth_url(cls, url: str | None) -> str | None:
        if url is not None:
            if not re.fullmatch(r"https://[^\s/]+(/\S*)?", url):
                raise ValueError(
                    f"'{url}' is not an https:// Keystone URL (e.g. https://keystone.example.fr:5000/v3)"
                )
            _check_sovereign(url)
        return url

    @model_validator(mode="after")
    def _pinned_flavors(self) -> OpenStackCloud:
        table = pricing.OFFERS.get(self.offer)
        if table is None:
            return self
        problems = []
        for role in ROLES:
            name = getattr(self.flavors, role)
            if name is not None and name not in table.flavor_names:
                problems.append(
                    f"flavors.{role}: '{name}' is not in the '{self.offer}' price table; "
                    f"valid flavors: {', '.join(table.flavor_names)}"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self


class LabCloud(_NodeSources):
    """The local lab: systemd-nspawn machines on a host bridge of this machine."""

    kind: Literal["lab"]
    bridge: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,14}$")]
    """Host bridge name (Linux limits interface names to 15 characters)."""
    subnet: IPv4Net
    """Lab subnet; the bridge takes the first address, machines the following ones."""
    @field_validator("subnet")
    @classmethod
    def _subnet(cls, net: IPv4Net) -> IPv4Net:
        if net.prefixlen > 28:
            raise ValueError(f"{net} is too small for the lab; use a /24 (e.g. 10.77.0.0/24)")
        if not net.is_private:
            raise ValueError(f"{net} is not a private range; use e.g. 10.77.0.0/24")
        return net


Cloud = Annotated[OpenStackCloud | LabCloud, Field(discriminator="kind")]
