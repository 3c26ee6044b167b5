"""Generation backends: what the server path sends, and a missing vLLM named in one line (exit 2)."""
from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from megatron_snow.evaluate.cli import main
from megatron_snow.evaluate.generate import VLLM_MISSING
from megatron_snow.evaluate.tasks import ALL_UNITS, load_problems, stop_strings


class _Recorder(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that records each request body and answers from a prompt -> text table."""

    answers: dict[str, str] = {}
    requests: list[tuple[str, str, dict | None]] = []

    def _reply(self, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self.requests.append(("GET", self.path, None))
        self._reply({"object": "list", "data": [{"id": "served-model", "object": "model", "created": 0,
                                                 "owned_by": "test"}]})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("POST", self.path, body))
        text = self.answers.get(body.get("prompt"), "")
        self._reply({"id": "cmpl-0", "object": "text_completion", "created": 0, "model": body.get("model"),
                     "choices": [{"index": 0, "text": text, "finish_reason": "length", "logprobs": None}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def log_message(self, *args):
        pass


def test_server_request_shape(tmp_path, eval_cache, benchmarks_dir):
    """Each prompt goes to /v1/completions once: stripped prompt, greedy, the evaluator's stops; answers are cut."""
    unit = ALL_UNITS["humaneval+"]
    problems = load_problems(unit, benchmarks_dir, limit=2)
    p0, p1 = problems["HumanEval/0"], problems["HumanEval/1"]
    # the right body followed by more text a server would send on: the stop "\ndef " must cut it
    right = "\n" + p0["canonical_solution"] + "\n\ndef unrelated():\n    return 1\n"
    _Recorder.answers = {p0["prompt"].rstrip("\n"): right, p1["prompt"].rstrip("\n"): "\n    return []\n"}
    _Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    out = tmp_path / "out"
    try:
        rc = main(["--server", f"http://127.0.0.1:{server.server_address[1]}/v1", "--benchmarks", "humaneval+",
                   "--limit", "2", "--out", str(out), f"cache_dir={eval_cache}", "sandbox.workers=2",
                   "generation.concurrency=2", "generation.max_new_tokens=64"])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert rc == 0
    gets = [r for r in _Recorder.requests if r[0] == "GET"]
    posts = [r for r in _Recorder.requests if r[0] == "POST"]
    assert [g[1] for g in gets] == ["/v1/models"]  # the model name comes from the server
    assert sorted(p[2]["prompt"] for p in posts) == sorted(_Recorder.answers)
    for _, path, body in posts:
        assert path == "/v1/completions"
        assert set(body) == {"model", "prompt", "max_tokens", "temperature", "stop", "generation_config"}
        assert body["model"] == "served-model" and body["max_tokens"] == 64 and body["temperature"] == 0.0
        assert body["stop"] == stop_strings(unit) and "\ndef " in body["stop"]
        assert json.loads(body["generation_config"]) == {"do_sample": False, "max_new_tokens": 64}
    lines = (out / "samples" / "humanevalplus.jsonl").read_text().splitlines()
    samples = {s["task_id"]: s for s in map(json.loads, lines)}
    assert samples["HumanEval/0"]["completion"] == "\n" + p0["canonical_solution"] + "\n"
    report = json.loads((out / "results.json").read_text())
    assert report["units"]["humaneval+"]["scores"] == {"pass@1": 50.0, "base_pass@1": 50.0}
    gen = report["settings"]["generation"]
    assert (gen["backend"], gen["server_model"], gen["concurrency"]) == ("server", "served-model", 2)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_missing_vllm_is_one_line_exit_2(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "out"
    assert main(["--model", str(model), "--benchmarks", "humaneval+", "--out", str(out),
                 "generation.backend=vllm"]) == 2
    err = capsys.readouterr().err
    assert err == f"evaluate: {VLLM_MISSING}\n"
    assert "vllm serve" in err and "--server" in err
    assert not out.exists()  # refused before any work
    assert main(["--model", str(model), "--out", str(out), "generation.backend=tgi"]) == 2
    assert capsys.readouterr().err.strip() == ("evaluate: generation.backend: expected one of auto, transformers, "
                                               "vllm, got 'tgi'")


def test_cpu_generation_runs_on_the_fixed_thread_count(tmp_path):
    """transformers on CPU generates on CPU_THREADS torch threads whatever the caller set (greedy argmax over
    near-equal logits must not depend on the machine's thread count), gives the caller's setting back and
    says what it used."""
    import torch

    from megatron_snow.evaluate.generate import CPU_THREADS, GenerationConfig, TransformersBackend
    from tests.evaluate.tiny_model import train_tiny_llama

    model_dir = train_tiny_llama(tmp_path / "model", [("def one():", "\n    return 1\n")])
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_THREADS + 2)
    try:
        backend = TransformersBackend(str(model_dir), GenerationConfig(device="cpu"))
        seen: set[int] = set()
        backend.model.register_forward_pre_hook(lambda module, args: seen.add(torch.get_num_threads()))
        out = backend.generate(["def one():"], ["\ndef "], max_new_tokens=32)
        assert seen == {CPU_THREADS}  # every forward pass of the generation
        assert torch.get_num_threads() == CPU_THREADS + 2
    finally:
        torch.set_num_threads(before)
    assert out == ["\n    return 1\n"]
    assert backend.determinism() == {"torch_threads": CPU_THREADS, "deterministic_algorithms": True}
