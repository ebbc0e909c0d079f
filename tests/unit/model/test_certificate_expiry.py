"""The renewal margin of served certificates (model/certificate_expiry.py)."""

from __future__ import annotations

import datetime as dt

from visio_infra.model.certificate_expiry import RENEW_BEFORE, days_left, expiry_problem, needs_renewal

NOW = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_a_certificate_with_more_than_the_margin_left_is_fine():
    not_after = NOW + RENEW_BEFORE + dt.timedelta(hours=1)
    assert not needs_renewal(not_after, NOW)
    assert expiry_problem("sfu-1 10.0.0.1:443", not_after, NOW, tls_source="stack-ca", stack="lab") is None


def test_inside_the_margin_names_the_listener_the_date_and_pulumi_up():
    not_after = NOW + dt.timedelta(days=12)
    problem = expiry_problem("sfu-1 10.0.0.1:443", not_after, NOW, tls_source="stack-ca", stack="interieur")
    assert problem is not None
    assert problem.startswith(
        "sfu-1 10.0.0.1:443: its certificate expires on 2027-03-13 12:00 UTC (12 days left)"
    )
    assert "30-day renewal margin" in problem
    assert "`pulumi up --stack interieur`" in problem


def test_an_expired_certificate_says_so():
    problem = expiry_problem("db-1 10.0.0.9:5432", NOW - dt.timedelta(days=2), NOW, tls_source="stack-ca",
                             stack="lab")
    assert problem is not None and "expired on 2027-02-27 12:00 UTC" in problem


def test_certificates_from_files_are_replaced_then_configured():
    problem = expiry_problem("turn-1 192.0.2.4:5349", NOW + dt.timedelta(days=29), NOW, tls_source="files",
                             stack="culture")
    assert problem is not None
    assert "stacks/Pulumi.culture.yaml" in problem and "`visio configure culture`" in problem
    assert "pulumi up" not in problem


def test_days_left_is_fractional_and_negative_once_passed():
    assert days_left(NOW + dt.timedelta(hours=36), NOW) == 1.5
    assert days_left(NOW - dt.timedelta(days=1), NOW) == -1.0


def test_the_stack_ca_renews_with_the_same_margin_verify_warns_with():
    from visio_infra.cloud import pki

    assert pki.RENEW_BEFORE is RENEW_BEFORE
