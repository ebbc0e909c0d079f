"""The Pulumi program: what `pulumi up` creates for one ministry.

`deployment` wires everything; `infrastructure` is the one interface both backends implement,
`openstack/` (a sovereign OpenStack region) and `lab/` (systemd-nspawn machines on this host).
Above the backends, identical for both: `secrets` (+ `generated_secret`), `pki`, `outputs`.
The host configuration step it runs last lives in `visio_infra.hosts`.
"""
