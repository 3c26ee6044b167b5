#!/usr/bin/env python
"""Requests/s and output tokens/s of the synthesis generator vs a plain concurrent openai client.

Same server, same prompts (the shipped ``code_file`` template over snippets of
real local files), same concurrency, same run; the rounds alternate (plain,
generator, generator, plain, ...) so that server-side drift hits both; the
ratio reported is the median over rounds of generator/plain. The
generator is what ``synthesize`` runs per rank: ``run_requests`` (worker pool,
retries, timeouts, the progress bar) with every answer appended to a JSON-lines
log as the step does. The plain client is ``openai.AsyncOpenAI`` with an
``asyncio.Semaphore`` and ``gather``: what one would write by hand.

Without --base-url, a tiny random Llama (tests/llm_server.py) is served by
``transformers serve`` for the run (random weights: every answer runs to
--max-tokens, so both sides ask for the same work).

  python bench/bench_synthesize.py --requests 96 --concurrency 16 --max-tokens 64
  python bench/bench_synthesize.py --base-url http://gpu-node:8000/v1 --model meta-llama/Llama-3.1-70B-Instruct \\
      --requests 2000 --concurrency 256 --max-tokens 1024
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from megatron_snow.synthesis.client import SamplingConfig, ServerConfig, request_body, run_requests
from megatron_snow.synthesis.prompts import load_template
from megatron_snow.synthesis.seeds import snippet

REPO = Path(__file__).resolve().parents[1]


def prompts(n: int) -> list[list[dict]]:
    tpl = load_template("code_file")
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    out = []
    for i in range(n):
        text = files[i % len(files)].read_text(encoding="utf-8", errors="replace")
        out.append(tpl.chat("python", snippet(text, f"bench:{i}")[1]))
    return out


async def plain(base_url: str, model: str, msgs: list, concurrency: int, sampling: SamplingConfig) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", timeout=600, max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, m) -> int:
        async with sem:
            r = await client.chat.completions.create(model=model, messages=m, **request_body(sampling, i, "chat"))
            return r.usage.completion_tokens

    t, cpu = time.perf_counter(), time.process_time()
    tokens = await asyncio.gather(*(one(i, m) for i, m in enumerate(msgs)))
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    await client.close()
    return {"requests_per_s": len(msgs) / dt, "tokens_per_s": sum(tokens) / dt, "seconds": dt, "tokens": sum(tokens),
            "client_cpu_ms_per_request": 1000 * cpu / len(msgs)}


def generator(base_url: str, model: str, msgs: list, concurrency: int, sampling: SamplingConfig, log: Path) -> dict:
    cfg = ServerConfig(base_url=base_url, model=model, concurrency=concurrency, timeout_s=600)
    with open(log, "w", encoding="utf-8") as f:
        def on_result(res) -> None:  # what the step does with each answer
            f.write(json.dumps(res.__dict__, sort_keys=True) + "\n")
            f.flush()

        t, cpu = time.perf_counter(), time.process_time()
        stats = asyncio.run(run_requests(cfg, model, ((i, m, i) for i, m in enumerate(msgs)), len(msgs), sampling,
                                         on_result, progress=True, desc="generator"))
        dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    if stats["failed"]:
        raise RuntimeError(f"{stats['failed']} requests failed")
    return {"requests_per_s": len(msgs) / dt, "tokens_per_s": stats["completion_tokens"] / dt, "seconds": dt,
            "tokens": stats["completion_tokens"], "client_cpu_ms_per_request": 1000 * cpu / len(msgs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", help="an OpenAI-compatible server (default: start a tiny local one)")
    ap.add_argument("--model", default="", help="model name on that server")
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6, help="rounds per side, in ABBA order")
    args = ap.parse_args()
    sampling = SamplingConfig(max_tokens=args.max_tokens)
    msgs = prompts(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.base_url:
            run_all(args.base_url, args.model, msgs, args, sampling, tmp)
            return
        spec = importlib.util.spec_from_file_location("llm_server", REPO / "tests" / "llm_server.py")
        llm = importlib.util.module_from_spec(spec)
        sys.modules["llm_server"] = llm  # dataclasses look their module up there
        spec.loader.exec_module(llm)
        model_dir = llm.build_tiny_llama(tmp / "model", extra_texts=[m[1]["content"] for m in msgs[:20]],
                                         hidden=128, layers=2)
        with llm.serve(model_dir, log_path=tmp / "server.log") as server:
            asyncio.run(plain(server.base_url, server.model, msgs[: args.concurrency], args.concurrency, sampling))
            run_all(server.base_url, server.model, msgs, args, sampling, tmp)


def run_all(base_url: str, model: str, msgs: list, args, sampling: SamplingConfig, tmp: Path) -> None:
    res: dict[str, list[dict]] = {"plain": [], "generator": []}
    for r in range(args.rounds):  # ABBA order: drift of the server (or the machine) hits both sides alike
        order = ("plain", "generator") if r % 2 == 0 else ("generator", "plain")
        for side in order:
            if side == "plain":
                res["plain"].append(asyncio.run(plain(base_url, model, msgs, args.concurrency, sampling)))
            else:
                res["generator"].append(generator(base_url, model, msgs, args.concurrency, sampling,
                                                  tmp / f"log-{r}.jsonl"))
    print(f"\n{len(msgs)} requests, concurrency {args.concurrency}, max_tokens {args.max_tokens}, "
          f"{args.rounds} alternating rounds; server {base_url}")
    print(f"{'client':<10} {'req/s (median)':>15} {'tok/s (median)':>15} {'client CPU ms/req':>18}  per round req/s")
    med = {}
    for side, rows in res.items():
        med[side] = (statistics.median(x["requests_per_s"] for x in rows),
                     statistics.median(x["tokens_per_s"] for x in rows))
        cpu = statistics.median(x["client_cpu_ms_per_request"] for x in rows)
        print(f"{side:<10} {med[side][0]:>15.2f} {med[side][1]:>15.1f} {cpu:>18.2f}  "
              + ", ".join(f"{x['requests_per_s']:.2f}" for x in rows))
    pairs = [g["requests_per_s"] / p["requests_per_s"] for g, p in zip(res["generator"], res["plain"])]
    tok_pairs = [g["tokens_per_s"] / p["tokens_per_s"] for g, p in zip(res["generator"], res["plain"])]
    ratio_r, ratio_t = statistics.median(pairs), statistics.median(tok_pairs)
    print("generator / plain per round (requests/s): " + ", ".join(f"{x:.3f}" for x in pairs))
    print(f"generator / plain, median of rounds: requests/s x{ratio_r:.3f}, tokens/s x{ratio_t:.3f} "
          f"(overhead {100 * (1 - ratio_r):+.1f}% requests/s; target < 10%)")


if __name__ == "__main__":
    main()
