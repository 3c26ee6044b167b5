"""A faulty HTTP server for the synthesis tests: a proxy in front of a real OpenAI-compatible server
that misbehaves on purpose. Run as its own process::

    python faulty_server.py --port P [--upstream http://127.0.0.1:Q] [--faults 500,hang,drop,partial,garbage]
                            [--always 500] [--delay 0.2] [--hang-s 30] [--record bodies.jsonl]

``--faults`` applies one fault to each of the first POST requests, in arrival order, then forwards;
``--always`` applies one fault to every POST; ``--delay`` slows every forwarded request. Faults:
``500`` (an error answer), ``hang`` (no answer for ``--hang-s``), ``drop`` (the connection is closed
without an answer), ``partial`` (the upstream answer cut in half, then the connection closed),
``garbage`` (200 with a body that is not JSON). GET requests are always forwarded. ``--record`` appends
every POST body (one JSON line each) to a file.
"""
from __future__ import annotations

import argparse
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

from json_handler import JSONHandler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", default="")
    ap.add_argument("--faults", default="")
    ap.add_argument("--always", default="")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--hang-s", type=float, default=30.0)
    ap.add_argument("--record", default="")
    args = ap.parse_args()
    plan = [f for f in args.faults.split(",") if f]
    lock = threading.Lock()
    count = [0]

    class Handler(JSONHandler):
        def _forward(self, method: str, body: bytes | None) -> tuple[int, bytes]:
            req = urllib.request.Request(args.upstream + self.path, data=body, method=method,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=120) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        def do_GET(self) -> None:  # noqa: N802
            self._send(*self._forward("GET", None))

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                n = count[0]
                count[0] += 1
                if args.record:
                    with open(args.record, "ab") as f:
                        f.write(body.replace(b"\n", b" ") + b"\n")
            fault = args.always or (plan[n] if n < len(plan) else "")
            if fault == "500":
                self._send(500, b'{"error": {"message": "injected failure"}}')
            elif fault == "hang":
                time.sleep(args.hang_s)
                self.close_connection = True
            elif fault == "drop":
                self.close_connection = True
            elif fault == "partial":
                status, data = self._forward("POST", body)
                self._send(status, data[: len(data) // 2], length=len(data))
                self.close_connection = True
            elif fault == "garbage":
                self._send(200, b"<html>not json</html>")
            else:
                if args.delay:
                    time.sleep(args.delay)
                self._send(*self._forward("POST", body))

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
