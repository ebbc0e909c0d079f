"""Pulumi entry point: validate the stack's config, then build that ministry's deployment."""

from visio_infra.config import load_from_pulumi
from visio_infra.deployment import build_deployment

build_deployment(load_from_pulumi())
