"""The SSRF guard's address classification and allowlist, without sockets (IP literals only)."""

from __future__ import annotations

import ipaddress
import re

import pytest

from procjob.worker.errors import AddressRefused, InvalidParams
from procjob.worker.ssrf import blocked_reason, check_address, parse_allowed_networks, resolve_checked


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        pytest.param("93.184.216.34", None, id="a public IPv4 address passes"),
        pytest.param("2606:4700::1111", None, id="a public IPv6 address passes"),
        pytest.param("127.0.0.1", "loopback", id="IPv4 loopback"),
        pytest.param("::1", "loopback", id="IPv6 loopback"),
        pytest.param("10.1.2.3", "private", id="RFC 1918 10/8"),
        pytest.param("172.16.0.1", "private", id="RFC 1918 172.16/12"),
        pytest.param("192.168.1.1", "private", id="RFC 1918 192.168/16"),
        pytest.param("fd00::1", "private", id="IPv6 unique local (ULA)"),
        pytest.param("169.254.169.254", "link-local", id="the cloud metadata address"),
        pytest.param("fe80::1", "link-local", id="IPv6 link-local"),
        pytest.param("224.0.0.1", "multicast", id="IPv4 multicast"),
        pytest.param("ff02::1", "multicast", id="IPv6 multicast"),
        pytest.param("0.0.0.0", "unspecified", id="IPv4 unspecified"),
        pytest.param("::", "unspecified", id="IPv6 unspecified"),
        pytest.param("240.0.0.1", "private", id="the reserved 240/4 block"),
        pytest.param("100.64.0.1", "non-global", id="carrier-grade NAT space"),
        pytest.param("::ffff:127.0.0.1", "loopback", id="an IPv4-mapped loopback address"),
        pytest.param("::ffff:10.0.0.1", "private", id="an IPv4-mapped private address"),
    ],
)
def test_blocked_reason(address: str, reason: str | None) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason


def test_the_allowlist_lets_listed_networks_through() -> None:
    allowed = parse_allowed_networks("127.0.0.0/8, 10.20.0.0/16")
    check_address(ipaddress.ip_address("127.0.0.1"), allowed)
    check_address(ipaddress.ip_address("10.20.3.4"), allowed)
    check_address(ipaddress.ip_address("::ffff:127.0.0.1"), allowed)
    with pytest.raises(AddressRefused, match=re.escape("10.21.0.1 (private address)")):
        check_address(ipaddress.ip_address("10.21.0.1"), allowed)
    with pytest.raises(AddressRefused, match="loopback"):
        check_address(ipaddress.ip_address("::1"), allowed)


def test_an_empty_allowlist_allows_only_public_addresses() -> None:
    assert parse_allowed_networks("") == ()
    assert parse_allowed_networks(None) == ()
    check_address(ipaddress.ip_address("8.8.8.8"), ())
    with pytest.raises(AddressRefused, match="PROCJOB_FETCH_ALLOWED_NETWORKS"):
        check_address(ipaddress.ip_address("127.0.0.1"), ())


def test_an_invalid_allowlist_entry_is_a_configuration_error() -> None:
    with pytest.raises(InvalidParams, match=re.escape("'10.0.0.0/33' is not a CIDR")):
        parse_allowed_networks("127.0.0.0/8,10.0.0.0/33")


def test_address_literals_resolve_to_themselves_and_are_checked() -> None:
    allowed = parse_allowed_networks("127.0.0.0/8")
    assert resolve_checked("127.0.0.1", 80, allowed) == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(AddressRefused, match=re.escape("host '10.0.0.1'")):
        resolve_checked("10.0.0.1", 80, allowed)
