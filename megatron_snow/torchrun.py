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


def main(argv: list[str] | None = None) -> int:
    import torch.distributed as td
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousConnectionError, RendezvousTimeoutError
    from torch.distributed.run import parse_args, run

    args = parse_args(argv)
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
