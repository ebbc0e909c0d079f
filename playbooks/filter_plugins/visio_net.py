"""Address filters for the Visio roles (only ansible.builtin is installed, not ansible.utils).

- `visio_is_ip` / `visio_is_cidr`: validation in each role's validate.yml;
- `visio_cidr_range`: coturn wants `denied-peer-ip=A-B` ranges and rejects CIDR syntax.
"""

from __future__ import annotations

import ipaddress


def visio_is_ip(value):
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def visio_is_cidr(value):
    try:
        ipaddress.ip_network(str(value), strict=True)
    except ValueError:
        return False
    return True


def visio_cidr_range(value):
    """'10.0.0.0/8' -> '10.0.0.0-10.255.255.255' (a single address stays as it is)."""
    net = ipaddress.ip_network(str(value), strict=True)
    if net.num_addresses == 1:
        return str(net.network_address)
    return f"{net.network_address}-{net.broadcast_address}"


class FilterModule:
    def filters(self):
        return {
            "visio_is_ip": visio_is_ip,
            "visio_is_cidr": visio_is_cidr,
            "visio_cidr_range": visio_cidr_range,
        }
