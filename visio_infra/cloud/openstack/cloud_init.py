"""Cloud-init user data for one OpenStack node (pure).

Only what a node needs to be reachable by Ansible on first boot: the admin user with the operators'
SSH keys, its hostname and the ministry's package mirror. Secrets never go here (user data is
readable from the metadata service); `user_data` refuses to return text that mentions a
non-European endpoint.
"""

from __future__ import annotations

from typing import Any

from visio_infra.model.apt_sources import security_sibling
from visio_infra.model.config.cloud import OpenStackCloud
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.rendering import render
from visio_infra.model.sovereignty import describe_foreign_endpoints
from visio_infra.model.topology import NodeSpec

TEMPLATE = "cloud-init.yaml.j2"
ADMIN_USER = "debian"
"""The Debian cloud images' default user, also the Ansible/testinfra remote user."""


class UserDataError(ValueError):
    """The rendered user data would break a sovereignty or secrecy rule."""


def context(config: StackConfig, node: NodeSpec) -> dict[str, Any]:
    cloud = config.cloud
    assert isinstance(cloud, OpenStackCloud), "cloud-init user data is for OpenStack nodes"
    return {
        "hostname": node.name,
        "fqdn": f"{node.name}.{cloud.dns_zone}",
        "role": node.role,
        "ministry": config.ministry.name,
        "admin_user": ADMIN_USER,
        "ssh_public_keys": list(cloud.ssh_public_keys),
        "package_mirror": cloud.package_mirror,
        "security_mirror": cloud.security_mirror or security_sibling(cloud.package_mirror),
    }


def user_data(config: StackConfig, node: NodeSpec) -> str:
    """The `#cloud-config` document for `node`."""
    text = render(TEMPLATE, context(config, node))
    foreign = describe_foreign_endpoints(text)
    if foreign:
        raise UserDataError(
            f"user data of {node.name} mentions non-European endpoints: {', '.join(foreign)}; "
            "use the ministry's own mirror (visio:cloud.package_mirror)"
        )
    return text
