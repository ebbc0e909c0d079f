"""Pulumi entry point: validate the stack's config, then build that ministry's deployment."""

from visio_infra.config import load_from_pulumi
from visio_infra.deployment import build_deployment
from visio_infra.provider_plugins import require_plugins

config = load_from_pulumi()
require_plugins(config)  # a missing provider plugin is named, with its fix, before any resource
build_deployment(config)
