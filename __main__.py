"""Pulumi entry point: validate the stack's config, then build that ministry's deployment."""

from visio_infra.cloud.deployment import build_deployment, exit_quietly_when_cancelled
from visio_infra.cloud.provider_plugins import require_plugins
from visio_infra.cloud.stack_config import load_from_pulumi

exit_quietly_when_cancelled()  # a failed update cancels the program: no KeyboardInterrupt traceback
config = load_from_pulumi()
require_plugins(config)  # a missing provider plugin is named, with its fix, before any resource
build_deployment(config)
