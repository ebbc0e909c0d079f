"""The stack file's `visio:*` sections as strict pydantic models, one module per concern.

`base` (roles, strict model, error type), `field_checks` (SSH keys, sovereign endpoints, NTP,
mirrors), `cloud` (OpenStack region or lab), `sections` (ministry, versions, domains, TLS, Meet,
hosts, upgrade), `network` (address plan, ports), `capacity` (audience, sizing knobs), `stack`
(the whole `StackConfig` and its cross-section rules), `messages` (pydantic errors as one line
per problem). Reading a file and the whole-file checks that need sizing and topology live above
them, in `visio_infra.model.stack_file`.
"""
