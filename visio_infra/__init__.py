"""Visio infrastructure: one ministry's LiveKit/coturn/PostgreSQL deployment per Pulumi stack.

Sovereign by design: no Google/Twilio STUN, no Pulumi Cloud state, no US SaaS anywhere in the
media path, the state or the secrets (see `visio_infra.sovereignty`).
"""
