"""Visio policy pack: `pulumi preview --policy-pack policy` (from the project root)."""

from pulumi_policy import PolicyPack
from visio_policies import policies

PolicyPack(name="visio-security", policies=policies())
