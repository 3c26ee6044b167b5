"""A small scripted OpenAI-compatible server for the synthesis bad-input tests (run as its own process).

It answers ``GET /v1/models`` and ``POST /v1/chat/completions`` / ``/v1/completions`` like vLLM would,
but what it answers is decided by a ``CASE:<name>`` word in the prompt (the seed's snippet), so a test
knows the outcome of every seed without a model::

    python script_server.py --port P [--die-after N] [--hang-s 30] [--log requests.jsonl]

Cases: none (a distinct, valid Python file derived from the prompt), ``500``, ``400``, ``hang`` (no
answer for ``--hang-s``), ``garbage`` (200, not JSON), ``badbytes`` (200, JSON with bytes that are not
UTF-8), ``cut`` (half a body, then the connection closed), ``nochoices`` (``choices: []``), ``empty``
(content ""), ``null`` (content null), ``length`` (finish reason "length"), ``nul`` (a NUL in the code),
``surrogate`` (a lone ``\\ud800`` escape in the code), ``wronglang`` (a JavaScript file), ``numbercontent``
(content 12345), ``badusage`` (token counts that are not counts; the answer is good), ``flaky``
(500 on the first try of a prompt, then a good answer), ``huge`` (a valid 200 kB Python file),
``shell`` (a distinct, valid Bash script derived from the prompt).
``--die-after N`` ends the process (as a crashed server would) after answering N generation requests.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import threading
import time
from http.server import ThreadingHTTPServer

from json_handler import JSONHandler
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: good_python
from bad_inputs import good_python  # noqa: E402

MODEL = "script-model"
CASE = re.compile(r"CASE:(\w+)")


def answer_for(prompt: str) -> tuple[str, dict]:
    """(case, fields of the choice) for a prompt."""
    m = CASE.search(prompt)
    case = m.group(1) if m else "good"
    h = int.from_bytes(hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).digest()[:4], "little")
    code = good_python(200_000 + h % 1_000_000)
    choice = {"text": f"Here is the file:\n```python\n{code}\n```\n", "finish_reason": "stop"}
    if case == "empty":
        choice["text"] = ""
    elif case == "null":
        choice["text"] = None
    elif case == "length":
        choice["finish_reason"] = "length"
    elif case == "nul":
        choice["text"] = f"```python\n{code}\nx = '\x00'\n```\n"
    elif case == "surrogate":
        choice["text"] = f"```python\n{code}\nx = '\ud800'\n```\n"
    elif case == "wronglang":
        choice["text"] = "```javascript\nconsole.log(1);\n```\n"
    elif case == "numbercontent":
        choice["text"] = 12345
    elif case == "badusage":
        choice["usage"] = {"prompt_tokens": "many", "completion_tokens": -5}
    elif case == "shell":
        words = good_python(200_000 + h % 1_000_000).split()[1:9]
        name = "_".join(w.strip('".:,') for w in words[:3] if w.strip('".:,').isidentifier()) or "job"
        choice["text"] = (f"```bash\n#!/bin/bash\n# {' '.join(words)}\n{name}() {{\n  local count=$1\n"
                          f"  for i in $(seq 1 \"$count\"); do\n    echo \"{name} $i of {h}\"\n  done\n}}\n"
                          f"{name} {h % 9 + 2}\n```\n")
    elif case == "huge":
        choice["text"] = "```python\n" + "".join(f"v{i} = {i}\n" for i in range(20_000)) + "```\n"
    return case, choice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--die-after", type=int, default=0)
    ap.add_argument("--hang-s", type=float, default=30.0)
    ap.add_argument("--log", default="")
    args = ap.parse_args()
    lock = threading.Lock()
    answered = [0]
    tries: dict[str, int] = {}

    class Handler(JSONHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, json.dumps({"object": "list", "data": [
                    {"id": MODEL, "object": "model", "created": 0, "owned_by": "test"}]}).encode())
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            chat = self.path.endswith("/chat/completions")
            prompt = "\n".join(m["content"] for m in body["messages"]) if chat else body["prompt"]
            case, choice = answer_for(prompt)
            key = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
            with lock:
                tries[key] = tries.get(key, 0) + 1
                n_try = tries[key]
                if args.log:
                    with open(args.log, "a") as f:
                        f.write(json.dumps({"case": case, "key": key, "try": n_try}) + "\n")
            if case == "500" or (case == "flaky" and n_try == 1):
                return self._send(500, b'{"error": {"message": "scripted failure"}}')
            if case == "400":
                return self._send(400, b'{"error": {"message": "prompt too long"}}')
            if case == "hang":
                time.sleep(args.hang_s)
                self.close_connection = True
                return
            if case == "garbage":
                return self._send(200, b"<html>not json</html>")
            if case == "badbytes":
                return self._send(200, b'{"id": "x", "object": "chat.completion", "choices": [{"index": 0, '
                                       b'"message": {"role": "assistant", "content": "x = \xff\xfe"}, '
                                       b'"finish_reason": "stop"}]}')
            text = choice["text"] if isinstance(choice["text"], str) else ""
            usage = choice.pop("usage", None) or {"prompt_tokens": len(prompt) // 4,
                                                  "completion_tokens": len(text) // 4, "total_tokens": 0}
            if chat:
                c = {"index": 0, "message": {"role": "assistant", "content": choice["text"]},
                     "finish_reason": choice["finish_reason"]}
                resp = {"id": "cmpl-" + key[:8], "object": "chat.completion", "created": 0, "model": MODEL,
                        "choices": [c], "usage": usage}
            else:
                c = {"index": 0, "text": choice["text"], "finish_reason": choice["finish_reason"], "logprobs": None}
                resp = {"id": "cmpl-" + key[:8], "object": "text_completion", "created": 0, "model": MODEL,
                        "choices": [c], "usage": usage}
            if case == "nochoices":
                resp["choices"] = []
            data = json.dumps(resp).encode()  # ASCII: \ud800 stays an escape, as a server may send it
            if case == "cut":
                self._send(200, data[: len(data) // 2], length=len(data))
                self.close_connection = True
                return
            self._send(200, data)
            with lock:
                answered[0] += 1
                if args.die_after and answered[0] >= args.die_after:
                    os._exit(0)  # a crash: no goodbye to the clients in flight

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
