"""Phase-3 synthesis against real server processes: a tiny Llama behind `transformers serve`, trained
so that each seed's greedy answer is known, and a faulty proxy server in front of it."""
from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from llm_server import ScriptProcess, free_port
from megatron_snow import records
from megatron_snow.config import load_config
from megatron_snow.funnel import Funnel
from megatron_snow.synthesis.generate import SynthesizeConfig, main, synthesize
from synth_data import MAX_TOKENS, PER_LANGUAGE, chat_answers, completion_answers

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
pytestmark = pytest.mark.slow  # the session builds and trains a tiny model, then serves it


def overrides(phase2, template, out, base_url, *extra):
    return [f"phase2={phase2}", f"out={out}", f"prompt={template}", f"seeds_per_language={PER_LANGUAGE}",
            f"server.base_url={base_url}", f"sampling.max_tokens={MAX_TOKENS}", "seeds_per_unit=5",
            "server.concurrency=4", "server.timeout_s=20", "server.backoff_s=0.05", "progress=false",
            "decontaminate.benchmarks=[mbpp]", *extra]  # one benchmark file: the contaminated answer is MBPP's


def run(phase2, template, out, base_url, *extra) -> Funnel:
    cfg = load_config(SynthesizeConfig, None, overrides(phase2, template, out, base_url, *extra))
    return synthesize(cfg, progress=False)


def kept_records(out: Path) -> dict[str, tuple[str, str, str]]:
    return {r.id: (r.content, r.language, r.meta["synthesis"]["seed_id"]) for r in records.iter_records(out)}


def gen_rows(out: Path) -> list[dict]:
    rows = []
    for p in sorted((out / "_work" / "generated").glob("gen-*.jsonl")):
        rows += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return rows


def expected_counts() -> dict[str, dict[str, int]]:
    want: dict[str, dict[str, int]] = collections.defaultdict(lambda: collections.defaultdict(int))
    for seed_id, (_, reason) in chat_answers(None).items():
        lang = {"py": "python", "sh": "shell", "js": "javascript"}[seed_id.split("-")[0]]
        want[lang]["in"] += 1
        want[lang]["kept" if reason is None else f"dropped:{reason}"] += 1
    # every phase-2 record is counted: the two python documents that are not seeds too
    want["python"]["in"] += 2
    want["python"]["dropped:not_a_seed"] += 1  # py-low: below the top PER_LANGUAGE
    want["python"]["dropped:unscored"] += 1  # py-unscored
    return want


def funnel_counts(funnel: Funnel) -> dict[str, dict[str, int]]:
    return {lang: {k: v[0] for k, v in names.items() if v[0]} for lang, names in funnel.to_dict()["languages"].items()}


@pytest.fixture(scope="module")
def reference(trained_server, synth_inputs, tmp_path_factory):
    """An uninterrupted run through the command line: (output dir, funnel)."""
    phase2, template = synth_inputs
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(overrides(phase2, template, out, trained_server.base_url)) == 0
    return out, Funnel.read(out / "funnel.json")


class FaultyServer(ScriptProcess):
    """tests/synthesis/faulty_server.py as a process (killed on exit)."""

    def __init__(self, upstream: str = "", **opts):
        args = ["--upstream", upstream.removesuffix("/v1")] if upstream else []
        super().__init__(HERE / "faulty_server.py", *args, probe="/nothing", **opts)


def test_round_trip(reference, trained_server):
    """Every outcome of the plan lands in its funnel reason; kept records carry their provenance."""
    out, funnel = reference
    assert funnel_counts(funnel) == {k: dict(v) for k, v in expected_counts().items()}
    kept = kept_records(out)
    answers = chat_answers(None)
    assert sorted(seed for _, _, seed in kept.values()) == sorted(k for k, (_, r) in answers.items() if r is None)
    for r in records.iter_records(out):
        m = r.meta["synthesis"]
        assert m["model"] == trained_server.model and m["api"] == "chat" and m["finish_reason"] == "stop"
        assert len(m["prompt_template_hash"]) == 16 and m["prompt_template"] == "test_template"
        assert r.content in answers[m["seed_id"]][0]  # the code block of the planned answer, fences removed
        assert "```" not in r.content and m["parser"] in ("ast", "bash -n", "tree-sitter")
    dropped = {r.meta["synthesis"]["seed_id"]: r.meta["dropped"]["reason"]
               for r in records.iter_records(out / "dropped")}
    assert dropped == {k: r for k, (_, r) in answers.items() if r is not None}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["requests"] == stats["attempts"] == len(answers) and stats["errors"] == {}


def test_completions_api(trained_server, synth_inputs, tmp_path):
    """The completions API: the prompt opens the fence, the answer is the code up to the closing one."""
    phase2, template = synth_inputs
    funnel = run(phase2, template, tmp_path / "out", trained_server.base_url, "server.api=completions",
                 "languages=[shell]")
    assert funnel.total("in")[0] == 16 and funnel.total("kept")[0] == 2
    got = {r.meta["synthesis"]["seed_id"]: r.content for r in records.iter_records(tmp_path / "out")}
    assert got == {k: v.split("```")[0] for k, v in completion_answers().items()}


def test_faults_are_retried(reference, trained_server, synth_inputs, tmp_path):
    """500, a hang past the timeout, a dropped connection, a cut body and a non-JSON body: retried; same output."""
    phase2, template = synth_inputs
    faults = "500,hang,drop,partial,garbage"
    with FaultyServer(trained_server.base_url, faults=faults, hang_s=30) as proxy:
        funnel = run(phase2, template, tmp_path / "out", proxy.base_url, "server.timeout_s=3",
                     f"server.model={trained_server.model}")
    assert funnel_counts(funnel) == funnel_counts(reference[1])
    assert kept_records(tmp_path / "out") == kept_records(reference[0])
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["errors"] == {"http_500": 1, "timeout": 1, "connection": 2, "bad_response": 1}
    assert stats["attempts"] == stats["requests"] + 5


def test_failing_server_is_counted(trained_server, synth_inputs, tmp_path):
    """A server that always answers 500: every seed counted as request_failed, the run ends."""
    phase2, template = synth_inputs
    extra = ["server.max_attempts=2", f"server.model={trained_server.model}", "languages=[shell]"]
    with FaultyServer(trained_server.base_url, always="500") as proxy:
        funnel = run(phase2, template, tmp_path / "out", proxy.base_url, *extra)
    # the 11 python and 1 javascript documents: another language than asked for
    assert funnel.total("in")[0] == 2 + 14 and funnel.reasons() == {"request_failed": 2, "language_not_requested": 14}
    rows = gen_rows(tmp_path / "out")
    assert len(rows) == 2 and all(r["attempts"] == 2 and r["error"] == "http_500" for r in rows)


def test_prompt_longer_than_the_context_is_set_aside(trained_server, synth_inputs, tmp_path):
    """A prompt the server rejects as longer than its model's context (2,048 tokens) is counted as
    prompt_too_long with the server's message, asked once, never as a request_failed."""
    phase2, template = synth_inputs
    long_template = tmp_path / "long_template.txt"
    padding = " ".join(f"w{i}" for i in range(3000))  # far over 2,048 tokens in the tiny byte-level vocabulary
    long_template.write_text(template.read_text().replace("### user\n", f"### user\n{padding}\n"))
    funnel = run(phase2, long_template, tmp_path / "out", trained_server.base_url, "languages=[shell]")
    assert funnel.reasons() == {"prompt_too_long": 2, "language_not_requested": 14}
    rows = gen_rows(tmp_path / "out")
    assert len(rows) == 2 and all(r["attempts"] == 1 and r["error"] == "prompt_too_long" for r in rows)
    assert all("takes at most 2048" in r["detail"] for r in rows)
    dropped = [r.meta["dropped"] for r in records.iter_records(tmp_path / "out" / "dropped")]
    assert [d["reason"] for d in dropped] == ["prompt_too_long"] * 2
    assert all("takes at most 2048" in d["server"] for d in dropped)


def test_no_server_stops_and_resumes(trained_server, synth_inputs, tmp_path):
    """No server at all: the run stops with one line (exit 1) instead of counting every seed as failed,
    keeps nothing as an answer, and the same run against a server then finishes."""
    from megatron_snow.stages import StepError

    phase2, template = synth_inputs
    extra = ["server.max_attempts=2", f"server.model={trained_server.model}", "languages=[shell]"]
    with pytest.raises(StepError, match="stopped answering") as e:
        run(phase2, template, tmp_path / "out", f"http://127.0.0.1:{free_port()}/v1", *extra)
    assert e.value.exit_code == 1 and gen_rows(tmp_path / "out") == []
    funnel = run(phase2, template, tmp_path / "out", trained_server.base_url, *extra)
    assert funnel.total("kept")[0] == 1 and funnel.reasons() == {"syntax_error": 1, "language_not_requested": 14}
    assert len(gen_rows(tmp_path / "out")) == 2  # sh-0 kept, sh-1 answered with bad shell (as planned)


def test_killed_run_resumes_without_duplicates(reference, trained_server, synth_inputs, tmp_path):
    """SIGKILL mid-way (requests slowed by a proxy), then the same command: no seed generated twice,
    and the same records as the uninterrupted run."""
    phase2, template = synth_inputs
    out = tmp_path / "out"
    extra = ["server.concurrency=1", f"server.model={trained_server.model}"]
    with FaultyServer(trained_server.base_url, delay=0.3) as proxy:
        cmd = [sys.executable, "-m", "megatron_snow", "synthesize",
               *overrides(phase2, template, out, proxy.base_url, *extra)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "MEGATRON_SNOW_NO_MPI": "1"})
        try:
            deadline = time.monotonic() + 120
            while not (out / "_work" / "generated").is_dir() or len(gen_rows(out)) < 4:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
    before = {r["index"] for r in gen_rows(out)}
    assert 4 <= len(before) < len(chat_answers(None)) and not (out / "manifest.json").exists()
    assert main(overrides(phase2, template, out, trained_server.base_url, *extra)) == 0  # no proxy now
    rows = gen_rows(out)
    counts = collections.Counter(r["index"] for r in rows)
    assert max(counts.values()) == 1 and len(counts) == len(chat_answers(None))  # each seed generated once
    assert {r["index"] for r in rows if r["pid"] == os.getpid()} == set(counts) - before  # the rest, once
    assert kept_records(out) == kept_records(reference[0])
    assert funnel_counts(Funnel.read(out / "funnel.json")) == funnel_counts(reference[1])


@pytest.mark.mpi
def test_two_ranks_same_records(reference, trained_server, synth_inputs, tmp_path):
    """mpiexec -n 2: both ranks send requests and write units; the records equal the 1-rank run's."""
    if shutil.which("mpiexec") is None:
        pytest.skip("mpiexec not installed")
    phase2, template = synth_inputs
    out = tmp_path / "out"
    cmd = ["mpiexec", "-n", "2", sys.executable, "-m", "megatron_snow", "synthesize",
           *overrides(phase2, template, out, trained_server.base_url)]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and all(r["units"] for r in ranks["ranks"])
    assert {r["rank"] for r in gen_rows(out)} == {0, 1}
    assert kept_records(out) == kept_records(reference[0])
    for name in ("part-00000.jsonl.gz", "part-00001.jsonl.gz", "part-00002.jsonl.gz"):
        assert (out / name).read_bytes() == (reference[0] / name).read_bytes()


def test_bad_settings_exit_2(synth_inputs, tmp_path, capsys):
    phase2, template = synth_inputs
    assert main([f"phase2={phase2}", f"out={tmp_path / 'o'}", "sampling.top_p=2"]) == 2
    assert main([f"phase2={phase2}", f"out={tmp_path / 'o'}", "server.api=grpc"]) == 2
    assert main([f"phase2={phase2}", f"out={tmp_path / 'o'}", "prompt=no_such_template"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "top_p" in err[0] and "grpc" in err[1] and "no_such_template" in err[2]


def test_sbatch_script_outside_slurm(reference, trained_server, synth_inputs, tmp_path):
    """slurm/synthesize.sh: starts the server (here `transformers serve` through SERVER_CMD), awaits
    readiness, keeps its log, runs the generator, stops the server; same records as the reference."""
    phase2, template = synth_inputs
    out, logs = tmp_path / "out", tmp_path / "logs"
    port = free_port()
    server_cmd = (f"ulimit -v {6 * 1024 * 1024}; OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 {sys.executable} -m "
                  f"transformers.cli.transformers serve {trained_server.model} --host 127.0.0.1 --port $PORT "
                  "--device cpu --continuous-batching --cb-num-blocks 128 --cb-block-size 32")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PORT=str(port), MODEL=trained_server.model, SERVER_CMD=server_cmd, LOG_DIR=str(logs),
               READY_POLL_S="1", READY_TIMEOUT="300", MEGATRON_SNOW_NO_MPI="1")
    args = [a for a in overrides(phase2, template, out, "unused") if not a.startswith("server.base_url")]
    p = subprocess.run(["bash", "slurm/synthesize.sh", *args], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=400)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "server ready after" in p.stdout
    server_logs = list(logs.glob("snow-synthesize-local-server-*.log"))
    assert len(server_logs) == 1 and server_logs[0].stat().st_size > 0
    assert kept_records(out) == kept_records(reference[0])
    with pytest.raises(OSError):  # the script stopped its server
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_sampling_fields_on_the_wire(trained_server, synth_inputs, tmp_path):
    """What reaches the server: standard sampling fields for vLLM/SGLang; when sampling, also the
    generation_config that makes `transformers serve` sample (greedy: temperature 0 is enough there)."""
    phase2, template = synth_inputs
    bodies = tmp_path / "bodies.jsonl"
    with FaultyServer(trained_server.base_url, record=bodies) as proxy:
        base = [f"server.model={trained_server.model}", "languages=[shell]"]
        run(phase2, template, tmp_path / "greedy", proxy.base_url, *base)
        run(phase2, template, tmp_path / "sampled", proxy.base_url, *base, "sampling.temperature=0.8",
            "sampling.top_p=0.9", "sampling.seed=7", "sampling.extra_generation_config={eos_token_id: 2}")
    sent = [json.loads(line) for line in bodies.read_text().splitlines()]
    greedy, sampled = sent[:2], sent[2:]
    assert len(sampled) == 2 and all(b["model"] == trained_server.model for b in sent)
    for b in greedy:
        assert b["temperature"] == 0 and b["max_tokens"] == MAX_TOKENS and "generation_config" not in b
    for b in sampled:
        assert (b["temperature"], b["top_p"], b["max_tokens"]) == (0.8, 0.9, MAX_TOKENS)
        assert json.loads(b["generation_config"]) == {"do_sample": True, "temperature": 0.8, "top_p": 0.9,
                                                      "max_new_tokens": MAX_TOKENS, "eos_token_id": 2}
    assert len({b["seed"] for b in sampled}) == 2  # per-request seeds, derived from sampling.seed and the seed id
    assert {b["seed"] for b in sampled}.isdisjoint(b["seed"] for b in greedy)


def test_sampling_takes_effect_on_transformers_serve(tmp_path):
    """Each request's temperature through our client takes effect on `transformers serve --continuous-batching`:
    temperature > 0 samples (four seeds, four answers differ), temperature 0 is greedy (four seeds, one answer).

    The server's batching manager starts with the served model's generation config (transformers 5.25, read in
    its source): it samples only when that config has ``do_sample: true``, and a request can set only the
    temperature / top-k / top-p that the config itself sets (temperature 0 becomes top-k 1). So the model is
    served with a sampling config, as a model meant to be sampled from on that server must be (client.py)."""
    import asyncio

    from llm_server import build_tiny_llama, serve
    from megatron_snow.synthesis.client import SamplingConfig, ServerConfig, run_requests

    model_dir = build_tiny_llama(tmp_path / "model",
                                 generation={"do_sample": True, "temperature": 0.7, "top_k": 50, "top_p": 0.95})
    answers = {}
    with serve(model_dir, log_path=tmp_path / "server.log") as server:
        cfg = ServerConfig(base_url=server.base_url, model=server.model, concurrency=2, timeout_s=120)
        msgs = [{"role": "user", "content": "def f(x):"}]
        for temperature in (1.0, 0.0):
            got = {}
            asyncio.run(run_requests(cfg, server.model, ((i, msgs, i) for i in range(4)), 4,
                                     SamplingConfig(temperature=temperature, max_tokens=12),
                                     lambda r, got=got: got.__setitem__(r.index, r), progress=False))
            assert all(r.error is None and r.completion_tokens > 0 for r in got.values()), temperature
            answers[temperature] = {r.text for r in got.values()}
    assert len(answers[1.0]) > 1
    assert len(answers[0.0]) == 1
