"""The SSRF guard: which addresses a worker may connect to on a user's behalf.

A URL in a ProcessingJob comes from whoever created the job, and the worker pod sits inside the
cluster network, so a URL naming the metadata service, the apiserver or a pod address must not
be fetched. Only globally routable unicast addresses pass, unless an address lies in a network
listed in ``PROCJOB_FETCH_ALLOWED_NETWORKS`` (comma-separated CIDRs).

The check is made on resolved addresses, and the caller connects to exactly the address that
passed (`procjob.worker.http` pins it), so a DNS answer that changes between check and connect
(DNS rebinding) cannot slip through. Every address a host resolves to must pass: a name that
mixes a public and a private address is refused.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence

from procjob.models.contract import ENV_FETCH_ALLOWED_NETWORKS as ALLOWED_NETWORKS_ENV
from procjob.worker.errors import AddressRefused, InvalidParams, SourceUnavailable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allowed_networks(value: str | None) -> tuple[IPNetwork, ...]:
    """Parse the comma-separated CIDR allowlist; an invalid entry is a configuration error."""
    networks: list[IPNetwork] = []
    for raw in (value or "").split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise InvalidParams(f"{ALLOWED_NETWORKS_ENV}: {item!r} is not a CIDR network") from None
    return tuple(networks)


def allowed_networks_from_env(env: Mapping[str, str]) -> tuple[IPNetwork, ...]:
    return parse_allowed_networks(env.get(ALLOWED_NETWORKS_ENV))


def blocked_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return blocked_reason(address.ipv4_mapped)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
    )
    for reason, hit in checks:
        if hit:
            return reason
    if not address.is_global:  # shared address space (100.64.0.0/10) and other special ranges
        return "non-global"
    return None


def check_address(address: IPAddress, allowed: Iterable[IPNetwork]) -> None:
    """Raise AddressRefused unless `address` is public or inside an allowed network."""
    plain = address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        plain = address.ipv4_mapped
    if any(plain.version == net.version and plain in net for net in allowed):
        return
    reason = blocked_reason(plain)
    if reason is not None:
        raise AddressRefused(
            f"refusing to connect to {plain} ({reason} address); list its network in {ALLOWED_NETWORKS_ENV} to allow it"
        )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Resolve `host` (a name or an address literal) to its distinct addresses, in DNS order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise AddressRefused(f"host {host!r} does not resolve") from None
        raise SourceUnavailable(f"resolving {host!r} failed: {exc.strerror}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def resolve_checked(host: str, port: int, allowed: Sequence[IPNetwork]) -> list[IPAddress]:
    """Resolve `host` and check every address; the result is what the caller may connect to."""
    addresses = resolve(host, port)
    if not addresses:
        raise AddressRefused(f"host {host!r} has no addresses")
    for address in addresses:
        try:
            check_address(address, allowed)
        except AddressRefused as exc:
            raise AddressRefused(f"host {host!r}: {exc}") from None
    return addresses
