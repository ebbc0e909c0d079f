"""Render the project's Jinja2 templates (`templates/`) the same way everywhere.

Cloud-init user data, inventories and reports go through here, so every rendering is strict: an
undefined variable is an error, never an empty string silently shipped to a machine. No Pulumi.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "templates"


def _quote(value: Any) -> str:
    """A scalar as a double-quoted YAML/JSON string (YAML is a superset of JSON for scalars)."""
    return json.dumps(str(value), ensure_ascii=False)


@lru_cache(maxsize=8)
def environment(templates_dir: Path = TEMPLATES_DIR) -> jinja2.Environment:
    """A strict environment over `templates_dir`, with a `quote` filter for YAML-safe strings."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - renders YAML/INI/text, never HTML
    )
    env.filters["quote"] = _quote
    return env


def render(template: str, context: Mapping[str, Any], templates_dir: Path = TEMPLATES_DIR) -> str:
    """Render `templates_dir/template` with `context`; undefined variables raise."""
    return environment(templates_dir).get_template(template).render(**context)


def render_string(source: str, context: Mapping[str, Any]) -> str:
    """Render a template given as text, with the same strict settings."""
    return environment().from_string(source).render(**context)
