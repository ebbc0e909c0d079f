"""The `visio` operator commands, one module each (`cli` only dispatches): `plan` (+ `cloud_check`),
`configure`, `verify`, `upgrade`, `summary`; `stack_outputs` reads a deployed stack's outputs.
"""
