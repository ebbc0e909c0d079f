"""The pure model: the stack file, sizing, topology, pricing, security rules, sovereignty, rollout
order, whether a cloud can hold a stack.

No Pulumi, no processes, no network: the same code runs in `pulumi up`, `visio plan` and the unit
tests. The only reads are the stack file (`stack_file.load_stack_file`), the templates
(`rendering`) and this host's apt sources (`apt_sources.read_host_sources`). The model imports
nothing from the other layers (tests/unit/test_layers.py).
"""
