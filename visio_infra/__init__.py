"""Visio infrastructure: one ministry's LiveKit/coturn/PostgreSQL deployment per Pulumi stack.

Sovereign by design: no Google/Twilio STUN, no Pulumi Cloud state, no US SaaS anywhere in the
media path, the state or the secrets (see `visio_infra.model.sovereignty`).

Grouped by purpose, imports only going down (tests/unit/test_layers.py):

    commands  ->  cloud  ->  hosts  ->  probes  ->  model

`commands` the `visio` operator commands; `cloud` the Pulumi program (OpenStack and lab backends
behind one interface); `hosts` host configuration and rolling upgrades through Ansible; `probes`
the TURN client and the real call; `model` the pure stack config, sizing, topology and rules.
"""

from visio_infra import state_compat

state_compat.install()
