"""The two-hosts fixture itself: two hostnames, each host reaches the other by name over the link only,
and teardown leaves no namespace, link or process behind (also after a test that failed)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from twohosts import create_two_hosts, unavailable_reason

pytestmark = pytest.mark.multihost

# Prints this host's name, its address for the other host's name, and whether it reaches the machine's
# own loopback-only server (it must not: a host has its own network stack).
PROBE = """
import socket, sys
me, other, port = socket.gethostname(), sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close(); outside = "reached"
except OSError:
    outside = "unreachable"
print(me, socket.gethostbyname(other), outside)
"""


def test_two_hosts_have_own_names_addresses_and_network(two_hosts):
    import socket

    outside = socket.socket()
    outside.bind(("127.0.0.1", 0))  # a server on the machine's own loopback
    outside.listen()
    port = str(outside.getsockname()[1])
    a, b = two_hosts.a, two_hosts.b
    try:
        out_a = a.run([sys.executable, "-c", PROBE, b.name, port], check=True).stdout.split()
        out_b = b.run([sys.executable, "-c", PROBE, a.name, port], check=True).stdout.split()
    finally:
        outside.close()
    assert out_a == [a.name, b.addr, "unreachable"]
    assert out_b == [b.name, a.addr, "unreachable"]
    assert a.name != b.name and socket.gethostname() not in (a.name, b.name)
    # the same interface name on both, as on cluster nodes
    for h in two_hosts.hosts:
        shown = subprocess.run(["ip", "-n", h.netns, "-4", "-o", "addr", "show", "dev", h.iface],
                               capture_output=True, text=True, check=True).stdout
        assert f"inet {h.addr}/24" in shown


def test_teardown_removes_namespaces_links_and_processes():
    if unavailable_reason():
        pytest.skip(unavailable_reason())
    hosts = create_two_hosts()
    sleeper = hosts.b.popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pids = hosts.b.pids()
    assert pids, "the process started on host b is not in its namespace"
    hosts.destroy()
    assert sleeper.wait(timeout=10) != 0
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert hosts.a.netns not in listed and hosts.b.netns not in listed
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert not any(v in links for v in hosts.veth)
