"""The running Pulumi stack's config, validated before any resource is registered."""

from __future__ import annotations

from visio_infra.model.config.base import StackConfigError
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.stack_file import parse_stack_config


def load_from_pulumi() -> StackConfig:
    """Validate the running stack's config; on error, fail before any resource is registered."""
    import pulumi
    from pulumi.runtime.config import get_config_env

    stack = pulumi.get_stack()
    try:
        return parse_stack_config(get_config_env(), source=f"stacks/Pulumi.{stack}.yaml")
    except StackConfigError as exc:
        # RunError prints the message without a Python traceback.
        raise pulumi.RunError(str(exc)) from None
