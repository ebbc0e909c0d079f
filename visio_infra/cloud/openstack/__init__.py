"""The OpenStack backend of `visio_infra.cloud.infrastructure.Infrastructure` (pulumi-openstack v5)."""

from visio_infra.cloud.openstack.infrastructure import OpenStackInfrastructure

__all__ = ["OpenStackInfrastructure"]
