"""Two "hosts" on one machine for the multi-node tests: two network namespaces joined by a veth pair.

Each host has its own network stack (its own address on the link, its own loopback and ports), its own
hostname (a UTS namespace) and an ``/etc/hosts`` naming both hosts (bind-mounted in a private mount
namespace), so rendezvous, ``MASTER_ADDR`` and socket interfaces behave as on two cluster nodes: an
address or name that only works on one machine (``localhost``, a wrong interface) fails here too. The
file system stays shared, as on a cluster with a shared file system; each host gets its own ``TMPDIR``.

For contributors (the fixture is ``two_hosts`` in tests/multihost/conftest.py)::

    def test_something(two_hosts):
        a, b = two_hosts.a, two_hosts.b           # Host: name, addr, iface, netns
        pa = a.popen(["python", "-c", "..."])     # runs "on host a"
        b.run(["python", "-c", "..."])            # subprocess.run on host b
        b.kill_all(); b.link_down()               # a host that dies, a peer that is unreachable

Needs root (``ip netns``, ``nsenter``, ``unshare``). Where the kernel or the user cannot create network
namespaces the fixture skips with one line saying why; under ``CI=true`` it fails instead, so CI never
passes without running these tests. Traffic stays on the private test range ``10.231.0.0/24`` inside the
namespaces made here; nothing else is addressed. Every namespace (with its link and every process left
in it) is removed at teardown, also when the test fails; namespaces left by a killed test session
(named after its process id) are removed by the next one.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

NET = "10.231.0"  # private test range, only ever inside the namespaces made here
IFACE = "snow0"  # each host's end of the link (the same name on both, as on cluster nodes)
PREFIX = "snowt"  # namespace names: snowt<pid>a / snowt<pid>b
# Enter a host: own hostname, /etc/hosts naming both hosts, own TMPDIR; then exec the command.
_ENTER = 'mount --bind "$0" /etc/hosts && hostname "$1" && export TMPDIR="$2" && shift 2 && exec "$@"'


class NamespacesUnavailable(RuntimeError):
    """The kernel (or the user) cannot create network namespaces here."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass
class Host:
    name: str  # its hostname (and its name in both hosts' /etc/hosts)
    netns: str
    iface: str  # its end of the link (GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME on a real node)
    addr: str
    hosts_file: Path  # its /etc/hosts
    tmp: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def argv(self, cmd: list[str]) -> list[str]:
        """``cmd`` as run on this host."""
        return ["nsenter", f"--net=/var/run/netns/{self.netns}", "unshare", "--uts", "--mount",
                "--propagation", "private", "sh", "-c", _ENTER, str(self.hosts_file), self.name, str(self.tmp),
                *cmd]

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        """Start ``cmd`` on this host (its own session, so the test can end all of it)."""
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.argv(cmd), **kw)
        self.procs.append(proc)
        return proc

    def run(self, cmd: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.argv(cmd), timeout=timeout, **kw)

    def pids(self) -> list[int]:
        """Every process running on this host (in its network namespace): only ones the test started."""
        out = _ip("netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all(self) -> None:
        """SIGKILL every process on this host at once (the host died: no process says goodbye)."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def link_down(self) -> None:
        """Take this host's end of the link down: packets to and from it are dropped, no FIN, no RST."""
        _ip("-n", self.netns, "link", "set", self.iface, "down")

    def link_up(self) -> None:
        _ip("-n", self.netns, "link", "set", self.iface, "up")


@dataclass
class TwoHosts:
    a: Host
    b: Host
    veth: tuple[str, str] = ("", "")  # the link's two ends as created (renamed inside the namespaces)

    @property
    def hosts(self) -> tuple[Host, Host]:
        return self.a, self.b

    def rsh(self) -> Path:
        """An ``ssh`` stand-in for MPI launchers (``mpiexec -launcher ssh -launcher-exec RSH``, or
        ``-launcher rsh``): ``RSH [-x] HOST COMMAND...`` runs COMMAND through a shell on that host."""
        path = self.a.hosts_file.parent / "rsh"
        if not path.exists():
            cases = "".join(f"  {h.name}) set -- {' '.join(shlex.quote(x) for x in h.argv([]))} sh -c \"$*\" ;;\n"
                            for h in self.hosts)
            path.write_text("#!/bin/sh\n# ssh HOST CMD... for the two test hosts (tests/multihost/twohosts.py)\n"
                            'while [ "${1#-}" != "$1" ]; do shift; done  # -x and other ssh options\n'
                            'host=$1; shift\ncase $host in\n' + cases +
                            '  *) echo "rsh: unknown host $host" >&2; exit 255 ;;\nesac\nexec "$@"\n')
            path.chmod(0o755)
        return path

    def unused_addr(self) -> str:
        """An address on the link that no host has (a wrong rendezvous address)."""
        return f"{NET}.9"

    def destroy(self) -> None:
        """End every process still on either host, then remove both namespaces (and with them the link)."""
        for h in self.hosts:
            for p in h.procs:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            h.kill_all()
        for h in self.hosts:
            for p in h.procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            _ip("netns", "del", h.netns, check=False)
            shutil.rmtree(h.tmp, ignore_errors=True)
        for v in self.veth:  # a link that never made it into its namespace (a failed setup)
            if _ip("link", "show", v, check=False).returncode == 0:
                _ip("link", "del", v, check=False)
        shutil.rmtree(self.a.hosts_file.parent, ignore_errors=True)


def _remove_stale() -> None:
    """Namespaces of earlier test sessions that were killed before their teardown ran."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        m = re.match(rf"({PREFIX}(\d+)[ab])\b", line)
        if m and not Path(f"/proc/{m.group(2)}").exists():
            _ip("netns", "del", m.group(1), check=False)


def unavailable_reason() -> str | None:
    """Why two hosts cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    missing = [t for t in ("ip", "nsenter", "unshare", "mount", "hostname") if shutil.which(t) is None]
    if missing:
        return f"missing tools for network namespaces: {', '.join(missing)}"
    return None


def create_two_hosts(names: tuple[str, str] = ("host-a", "host-b"), own_name_on_loopback: bool = False) -> TwoHosts:
    """Make the two hosts; raise NamespacesUnavailable (one line) if the kernel refuses.

    ``own_name_on_loopback``: each host's /etc/hosts maps its own name to 127.0.1.1 (Debian's default, common
    on cluster nodes), so a process that takes its address from its hostname advertises loopback."""
    reason = unavailable_reason()
    if reason:
        raise NamespacesUnavailable(reason)
    _remove_stale()
    pid = os.getpid()
    netns = [f"{PREFIX}{pid}a", f"{PREFIX}{pid}b"]
    veth = [f"sv{pid}a", f"sv{pid}b"]
    addrs = [f"{NET}.1", f"{NET}.2"]
    for ns in netns:
        _ip("netns", "del", ns, check=False)  # left by an earlier fixture of this session
    probe = _ip("netns", "add", netns[0], check=False)
    if probe.returncode != 0:
        raise NamespacesUnavailable(f"the kernel refused a network namespace: {probe.stderr.strip()}")
    work = Path(tempfile.mkdtemp(prefix="snow-hosts-"))
    files = []
    for me in names:
        f = work / f"hosts-{me}"
        f.write_text("127.0.0.1 localhost\n" + "".join(
            f"{'127.0.1.1' if own_name_on_loopback and n == me else a} {n}\n" for a, n in zip(addrs, names)))
        files.append(f)
    made = TwoHosts(*(Host(n, ns, v, a, f, work / f"tmp-{n}") for n, ns, v, a, f in
                      zip(names, netns, veth, addrs, files)), veth=tuple(veth))
    try:
        _ip("netns", "add", netns[1])
        _ip("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for h in made.hosts:
            h.tmp.mkdir()
            _ip("link", "set", h.iface, "netns", h.netns)
            # inside its namespace each end gets the same name, as every node of a cluster has its ib0
            _ip("-n", h.netns, "link", "set", h.iface, "name", IFACE)
            h.iface = IFACE
            _ip("-n", h.netns, "addr", "add", f"{h.addr}/24", "dev", h.iface)
            _ip("-n", h.netns, "link", "set", "lo", "up")
            _ip("-n", h.netns, "link", "set", h.iface, "up")
        _wait_link(made)
    except BaseException:
        made.destroy()
        raise
    return made


def _wait_link(hosts: TwoHosts, timeout: float = 10) -> None:
    """Until host b reaches a port on host a (the link is up both ways)."""
    code = ("import socket,sys,time\n"
            f"s=socket.socket(); s.bind(('{hosts.a.addr}', 0)); s.listen(); port=s.getsockname()[1]\n"
            "print(port, flush=True); c,_=s.accept(); c.close()\n")
    import sys

    server = hosts.a.popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    port = server.stdout.readline().strip()
    client = ("import socket,sys,time\n"
              f"for _ in range({int(timeout * 10)}):\n"
              f"    try: socket.create_connection(('{hosts.a.name}', {port}), timeout=1).close(); sys.exit(0)\n"
              "    except OSError: time.sleep(0.1)\n"
              "sys.exit(1)\n")
    ok = hosts.b.run([sys.executable, "-c", client], timeout=timeout + 5).returncode == 0
    server.wait(timeout=5) if ok else server.kill()
    if not ok:
        raise RuntimeError(f"{hosts.b.name} cannot reach {hosts.a.name} over the veth link")
