"""Host configuration through Ansible: the site playbook as a step of `pulumi up`
(`configuration`), the run itself (`ansible_run`, `ansible_vars`, `inventory`) and the
node-by-node rolling upgrade (`rolling_upgrade`, `upgrade_runner`). Imports the model and the
probes (the TURN gate), never the Pulumi program or the commands.
"""
