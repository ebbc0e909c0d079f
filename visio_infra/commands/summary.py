"""`visio summary <stack>`: the short report printed after a deployment (no secrets in it)."""

from __future__ import annotations

import argparse
import sys

from visio_infra.commands.stack_outputs import StackOutputsError, read_outputs
from visio_infra.model.rendering import render
from visio_infra.model.stack_file import load_stack_file, stack_file


def render_summary(stack: str, outputs: dict, versions: dict, destroy: str) -> str:
    """Pure rendering of the summary from the (non-secret) outputs."""
    return render(
        "summary.txt.j2", {"stack": stack, "outputs": outputs, "versions": versions, "destroy": destroy}
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="visio summary", description=__doc__)
    parser.add_argument("stack")
    args = parser.parse_args(argv)
    try:
        config = load_stack_file(stack_file(args.stack))
        outputs = read_outputs(args.stack)
    except (StackOutputsError, ValueError) as exc:
        print(f"visio summary: {exc}", file=sys.stderr)
        return 1
    destroy = "make destroy" if config.is_lab else f"pulumi destroy --stack {args.stack}"
    print(render_summary(args.stack, outputs, config.versions.model_dump(), destroy))
    return 0
