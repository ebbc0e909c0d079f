"""The OpenStack backend of `visio_infra.infrastructure.Infrastructure` (pulumi-openstack v5)."""

from visio_infra.openstack.infrastructure import OpenStackInfrastructure

__all__ = ["OpenStackInfrastructure"]
