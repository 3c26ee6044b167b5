"""torchrun, with a one-line error when the nodes cannot meet instead of a launcher traceback.

    python -m megatron_snow.torchrun [torchrun's arguments]      (slurm/torchrun_node.sh runs it)

The same launcher as ``torchrun`` (torch.distributed.run: same arguments, same rendezvous, same
workers). What differs is how it fails across hosts, where torchrun prints a traceback of its own
internals that ends in a bare ``RendezvousTimeoutError``:

- the other nodes did not join within ``--rdzv-conf join_timeout`` (a wrong ``--rdzv-endpoint`` or
  ``--rdzv-id`` on some node, a node that never started, a peer it cannot reach);
- this node cannot reach the rendezvous store within ``read_timeout`` (wrong address or port, the
  first node down, a firewall);
- a worker failed (its own error line is above; this says which rank, where, and its exit code).

Each ends with one line starting ``torchrun:`` and exit status 1.

It also decides which node hosts the c10d rendezvous store: the node that owns the endpoint's address on
one of its interfaces (or was given it as ``--local-addr``). torchrun itself compares the endpoint only
with the node's hostname and what the hostname resolves to, so an endpoint given as an address on a node
whose name resolves elsewhere (Debian's ``127.0.1.1 <hostname>``, a management network) is hosted by no
one, and every node waits ``read_timeout`` for a store that never comes. ``is_host`` in ``--rdzv-conf``
still decides when given.
"""
from __future__ import annotations

import socket
import sys


def _conf(args, key: str, default: str) -> str:
    for item in (args.rdzv_conf or "").split(","):
        k, _, v = item.partition("=")
        if k.strip() == key:
            return v.strip()
    return default


def _is_store_host(endpoint: str, local_addr: str | None) -> bool:
    """Whether ``endpoint``'s host is this node: torchrun's own test (its hostname), or one of the endpoint's
    addresses is on this node's interfaces or is its ``--local-addr``."""
    import psutil
    from torch.distributed.elastic.rendezvous.utils import _matches_machine_hostname

    host = endpoint.rsplit(":", 1)[0].strip("[]") if endpoint else ""
    if not host:
        return False
    if _matches_machine_hostname(host):
        return True
    try:
        wanted = {a[4][0] for a in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except socket.gaierror:
        return False  # a name nobody resolves: torchrun says so when it tries to reach it
    mine = {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)}
    if local_addr:
        mine.add(local_addr)
    return bool(wanted & mine)


def main(argv: list[str] | None = None) -> int:
    import torch.distributed as td
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousConnectionError, RendezvousTimeoutError
    from torch.distributed.run import parse_args, run

    args = parse_args(argv)
    if args.rdzv_backend == "c10d" and not args.standalone and "is_host" not in (args.rdzv_conf or ""):
        is_host = _is_store_host(args.rdzv_endpoint, args.local_addr)
        args.rdzv_conf = ",".join(filter(None, [args.rdzv_conf, f"is_host={int(is_host)}"]))
    where = f"{args.rdzv_endpoint or 'localhost'} (id {args.rdzv_id})"
    host = socket.gethostname()
    try:
        run(args)
    except RendezvousTimeoutError:
        line = (f"rendezvous at {where} timed out on {host}: not all {args.nnodes} nodes joined within "
                f"join_timeout={_conf(args, 'join_timeout', '600')} s (a node that did not start, was given "
                "another --rdzv-endpoint or --rdzv-id, or cannot reach the endpoint)")
    except (RendezvousConnectionError, td.DistNetworkError, td.DistStoreError) as e:
        cause = e.__cause__ or e
        line = (f"{host} cannot reach the rendezvous store at {where} within "
                f"read_timeout={_conf(args, 'read_timeout', '60')} s (a wrong address, the first node down, "
                f"or a network between them that drops packets): {str(cause).strip().splitlines()[0][:300]}")
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        line = (f"rank {rank} (local rank {failure.local_rank}) on {host} exited with code {failure.exitcode}; "
                "its own error is above")
    else:
        return 0
    print(f"torchrun: {line}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
