"""Client address from trusted proxies only (issue 18 item 2).

Before: throttles keyed on X-Forwarded-For from anyone, so a fresh value per request bypassed them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conference.client_address import client_address_from, parse_networks, scope_client_address

PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.1", "fd00::/8"])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", "", "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # untrusted peer: the header is ignored
        ("10.0.0.5", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.5", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # forged left part ignored
        ("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3", "198.51.100.7"),  # two trusted hops skipped
        ("127.0.0.1", "10.1.2.3", "10.1.2.3"),  # every hop trusted: the left-most
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "garbage, 198.51.100.7", "198.51.100.7"),
        ("127.0.0.1", "198.51.100.7, garbage", "127.0.0.1"),  # malformed hop: stop at the last good one
        ("10.0.0.5", "[2001:db8::1]:443", "2001:db8::1"),
        ("10.0.0.5", "198.51.100.7:5555", "198.51.100.7"),
        ("::ffff:10.0.0.5", "198.51.100.7", "198.51.100.7"),  # v4-mapped peer
        ("fd00::1", "2001:db8::2", "2001:db8::2"),
        ("", "198.51.100.7", "unknown"),
    ],
)
def test_right_most_untrusted_hop(peer, xff, expected):
    assert client_address_from(peer, xff, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer(settings):
    settings.TRUSTED_PROXIES = []
    scope = {"client": ("192.0.2.1", 1234), "headers": [(b"x-forwarded-for", b"198.51.100.7")]}
    assert scope_client_address(scope) == "192.0.2.1"
    settings.TRUSTED_PROXIES = ["192.0.2.0/24"]
    assert scope_client_address(scope) == "198.51.100.7"


def test_malformed_trusted_proxies_refused_at_startup():
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='conference.settings'; django.setup()"
    env = {**os.environ, "TRUSTED_PROXIES": "10.0.0.0/8,not-a-network"}
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "TRUSTED_PROXIES" in r.stderr


@pytest.mark.django_db
def test_throttle_counts_the_forwarded_client_behind_a_trusted_proxy(api_client, user_factory, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "auth_address": "3/m"}

    def token(client_addr: str) -> int:
        return api_client.post(
            "/api/v1/auth/token",
            {"username": "x", "password": "y"},
            format="json",
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=f"6.6.6.{len(client_addr)}, {client_addr}",
        ).status_code

    assert [token("198.51.100.7") for _ in range(4)] == [401, 401, 401, 429]
    assert token("198.51.100.8") == 401  # another client behind the same proxy has its own count
