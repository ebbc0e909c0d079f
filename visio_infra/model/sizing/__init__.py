"""From a ministry's audience to node counts and flavors per role (pure).

`plan.plan(config)` is the entry point; `results` holds what it returns, `roles` the reasoning
per role, `flavors` how a flavor and a count are chosen from the offer's price table.
"""
