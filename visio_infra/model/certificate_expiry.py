"""When a served certificate is too close to its end (pure: no network, no Pulumi).

The stack CA's service certificate is re-issued by `pulumi up` once it is within RENEW_BEFORE of its
end (`visio_infra/cloud/pki.py`), and nothing renews it between two `up`s. So `visio verify` reads the
certificate each TLS listener actually serves and fails RENEW_BEFORE ahead, naming the listener, the
date and the fix: an operator who runs verify after every change hears about it a month ahead.
"""

from __future__ import annotations

import datetime as dt

RENEW_BEFORE = dt.timedelta(days=30)
"""A certificate this close to its end is re-issued by the next `pulumi up`, and verify fails."""


def days_left(not_after: dt.datetime, now: dt.datetime) -> float:
    """Days (fractional) until `not_after`; negative once it has passed."""
    return (not_after - now).total_seconds() / 86400


def needs_renewal(not_after: dt.datetime, now: dt.datetime) -> bool:
    return not_after - now < RENEW_BEFORE


def renewal_fix(tls_source: str, stack: str) -> str:
    """What the operator does about it, per `tls.source` of the stack file."""
    if tls_source == "stack-ca":
        return f"run `pulumi up --stack {stack}`: it re-issues the stack-CA certificate this close to its end"
    return (
        f"replace the certificate files named by visio:tls in stacks/Pulumi.{stack}.yaml, "
        f"then run `visio configure {stack}`"
    )


def expiry_problem(
    endpoint: str, not_after: dt.datetime, now: dt.datetime, *, tls_source: str, stack: str
) -> str | None:
    """None while the certificate `endpoint` serves has more than RENEW_BEFORE left, else one line
    saying what ends when and what to do."""
    if not needs_renewal(not_after, now):
        return None
    left = days_left(not_after, now)
    when = not_after.strftime("%Y-%m-%d %H:%M UTC")
    state = f"expired on {when}" if left < 0 else f"expires on {when} ({left:.0f} days left)"
    return (
        f"{endpoint}: its certificate {state}, under the {RENEW_BEFORE.days}-day renewal margin; "
        f"{renewal_fix(tls_source, stack)}"
    )
