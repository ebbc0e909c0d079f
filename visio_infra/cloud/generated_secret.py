"""A random credential generated inside the stack (a Python dynamic provider).

Why not pulumi-random: its provider plugin (`pulumi-resource-random`) is not packaged by any registry
reachable from these machines and its Go module is refused by the module proxy
(`go list -m -versions github.com/pulumi/pulumi-random/provider/v4` -> 403 "This module version is
not available"), so a stack using it could never be deployed here. This resource does the one thing
we used it for: draw a value once with `secrets` (the OS CSPRNG), keep it in the state as a Pulumi
secret (encrypted by the stack's secrets provider), and only draw again when its shape changes or
on `pulumi up --replace`.
"""

from __future__ import annotations

import secrets
import string
import uuid
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider

ALPHABET = string.ascii_letters + string.digits
"""Alphanumeric only: values end up in URLs, YAML, INI and shell environments unescaped."""
KIND = "visio-generated-secret"
"""Marker input, so tests and policies can recognise these resources among dynamic ones."""
MIN_PER_CLASS = 2
"""At least this many upper, lower and digit characters (password policies of some tools)."""


def draw(length: int, prefix: str = "") -> str:
    """A fresh random value of `length` characters (after `prefix`) with every character class."""
    if length < 3 * MIN_PER_CLASS:
        raise ValueError(f"a generated secret needs at least {3 * MIN_PER_CLASS} characters")
    while True:
        body = "".join(secrets.choice(ALPHABET) for _ in range(length))
        if (
            sum(c.isupper() for c in body) >= MIN_PER_CLASS
            and sum(c.islower() for c in body) >= MIN_PER_CLASS
            and sum(c.isdigit() for c in body) >= MIN_PER_CLASS
        ):
            return prefix + body


class _GeneratedSecretProvider(ResourceProvider):
    """create draws; diff replaces only when length or prefix change; read keeps the value."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        value = draw(int(props["length"]), str(props.get("prefix", "")))
        return CreateResult(id_=uuid.uuid4().hex, outs={**props, "value": value})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in ("length", "prefix", "kind") if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=props)


class GeneratedSecret(Resource):
    """`value` is the secret (always a Pulumi secret output)."""

    value: pulumi.Output[str]

    def __init__(
        self, name: str, length: int, prefix: str = "", opts: pulumi.ResourceOptions | None = None
    ) -> None:
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=["value"])
        super().__init__(
            _GeneratedSecretProvider(),
            name,
            {"kind": KIND, "length": length, "prefix": prefix, "value": None},
            pulumi.ResourceOptions.merge(opts, secret_opts),
        )
