"""Sovereignty check: no non-European service in the media path, the state or the secrets.

Visio exists so that French ministries stop depending on non-European providers. LiveKit's defaults
alone would send every participant's STUN binding to Google and Twilio, and Pulumi's default state
backend is Pulumi Cloud (US). `find_foreign_endpoints` scans any rendered text (cloud-init user data,
LiveKit/coturn configs, Ansible artifacts, stack config) for endpoints operated by non-European
companies. It is used by the policy pack and by the tests of every rendered config. Pure.
"""

from __future__ import annotations

import ipaddress
import re

FOREIGN_DOMAINS: dict[str, str] = {
    # Public STUN/TURN servers that LiveKit, browsers' samples or tutorials default to.
    "google.com": "Google (stun.l.google.com STUN, time.google.com)",
    "googleapis.com": "Google Cloud APIs / storage",
    "gstatic.com": "Google",
    "twilio.com": "Twilio (global.stun.twilio.com STUN/TURN)",
    "cloudflare.com": "Cloudflare (stun.cloudflare.com, time.cloudflare.com)",
    "stun.services.mozilla.com": "Mozilla STUN (US)",
    "xirsys.com": "Xirsys TURN SaaS",
    "metered.ca": "Metered Open Relay TURN (Canada)",
    "metered.live": "Metered TURN SaaS (Canada)",
    "livekit.cloud": "LiveKit Cloud (US)",
    # Time services: a node's clock decides whether TLS certificates and TURN credentials are valid.
    "apple.com": "Apple (time.apple.com)",
    "windows.com": "Microsoft (time.windows.com)",
    "microsoft.com": "Microsoft",
    "facebook.com": "Meta (time.facebook.com)",
    "aws.com": "Amazon (time.aws.com)",
    # Pulumi Cloud: state and secrets must stay on the ministry's own backend.
    "api.pulumi.com": "Pulumi Cloud API (US state backend)",
    "app.pulumi.com": "Pulumi Cloud console (US state backend)",
    # US hyperscalers' storage/KMS, often pasted as state or backup buckets.
    "amazonaws.com": "Amazon Web Services",
    "windows.net": "Microsoft Azure storage",
    "azure.com": "Microsoft Azure",
    "vault.azure.net": "Azure Key Vault",
    # US monitoring, error-tracking and chat SaaS that would receive logs, metrics or webhooks.
    "datadoghq.com": "Datadog",
    "newrelic.com": "New Relic",
    "sentry.io": "Sentry SaaS",
    "grafana.net": "Grafana Cloud",
    "slack.com": "Slack webhooks",
    "pagerduty.com": "PagerDuty",
}
"""Domains (and their subdomains) operated by non-European companies, with who runs them."""

FOREIGN_ADDRESSES: dict[str, str] = {
    "8.8.8.8": "Google Public DNS",
    "8.8.4.4": "Google Public DNS",
    "2001:4860:4860::8888": "Google Public DNS",
    "2001:4860:4860::8844": "Google Public DNS",
    "1.1.1.1": "Cloudflare DNS",
    "1.0.0.1": "Cloudflare DNS",
    "2606:4700:4700::1111": "Cloudflare DNS",
    "2606:4700:4700::1001": "Cloudflare DNS",
    "208.67.222.222": "Cisco OpenDNS",
    "208.67.220.220": "Cisco OpenDNS",
}
"""Well-known non-European resolver addresses (a node's DNS sees every name it resolves)."""

_HOSTNAME = re.compile(
    r"(?<![A-Za-z0-9_-])((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})(?![A-Za-z0-9_-])"
)
_IPV4 = re.compile(r"(?<![0-9.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9.])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Fa-f:])")


def foreign_owner(host: str) -> str | None:
    """Who operates `host` when it is a known non-European endpoint, else None."""
    name = host.lower().rstrip(".")
    for domain, owner in FOREIGN_DOMAINS.items():
        if name == domain or name.endswith("." + domain):
            return owner
    try:
        address = str(ipaddress.ip_address(name))
    except ValueError:
        return None
    return FOREIGN_ADDRESSES.get(address)


def find_foreign_endpoints(text: str) -> list[str]:
    """Every non-European host or address mentioned in `text`, sorted and unique."""
    found: set[str] = set()
    for match in _HOSTNAME.finditer(text):
        host = match.group(1).lower()
        if foreign_owner(host):
            found.add(host)
    for pattern in (_IPV4, _IPV6):
        for match in pattern.finditer(text):
            try:
                address = str(ipaddress.ip_address(match.group(0)))
            except ValueError:
                continue
            if address in FOREIGN_ADDRESSES:
                found.add(address)
    return sorted(found)


def describe_foreign_endpoints(text: str) -> list[str]:
    """Readable findings, e.g. `stun.l.google.com (Google ...)`, for error messages."""
    return [f"{host} ({foreign_owner(host)})" for host in find_foreign_endpoints(text)]
