"""Greedy completions of benchmark prompts: ``transformers``, vLLM or an OpenAI-compatible server.

Every backend takes raw prompts (base-model completion, as the paper
evaluates) and returns one completion per prompt, cut at the first stop
string (the evaluator's own list, ``tasks.stop_strings``), with a progress
bar. Decoding is greedy: ``do_sample=False`` (transformers), temperature 0
(vLLM, servers).

- ``TransformersBackend``: ``AutoModelForCausalLM`` on CPU or GPU; prompts
  sorted by length and left-padded in batches of ``batch_size``; generation
  stops per sequence at a stop string (``stop_strings``) or EOS. On CPU it
  runs on ``CPU_THREADS`` torch threads with deterministic algorithms
  (``megatron_snow.determinism``), recorded in the results: a greedy argmax
  between near-equal logits must not flip with the machine's thread count.
- ``VLLMBackend``: vLLM's offline API (``vllm.LLM(model, tensor_parallel_size,
  dtype)``, ``LLM.generate(prompts, SamplingParams(temperature=0, max_tokens,
  stop), use_tqdm=True)``, ``RequestOutput.outputs[0].text``: the same in the
  docs of vLLM 0.5 to 0.14 and main's ``entrypoints/llm.py``; read, not run
  here) when the package imports (GPU nodes). ``dtype`` auto means
  bfloat16, as for ``transformers`` on GPU: vLLM's own ``auto`` runs a float32
  checkpoint (the converter's default) in float16. Without vLLM installed,
  ``require_vllm`` names the alternatives in one line.
- ``ServerBackend``: ``/v1/completions`` of any OpenAI-compatible server
  (vLLM, SGLang, ``transformers serve``) through the ``openai`` client,
  ``concurrency`` requests in flight. ``transformers serve`` decodes as the
  model's ``generation_config`` says, so greedy settings are also sent in a
  ``generation_config`` field, which other servers ignore.
"""
from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from megatron_snow.config import Config, ConfigError, setting
from megatron_snow.evaluate.tasks import truncate_at_stops

CPU_THREADS = 1  # torch threads of CPU generation: fixed, so completions do not depend on the machine


@dataclass
class GenerationConfig(Config):
    backend: str = setting(
        "auto", help="auto (vllm when importable with CUDA, else transformers) | transformers | vllm")
    batch_size: int = setting(16, help="prompts per forward batch (transformers)", range="[1, inf)")
    max_new_tokens: int = setting(
        0, help="0: the evaluator's default (EvalPlus / EvoEval 768, BigCodeBench 1280)", range=">= 0")
    device: str = setting("auto", help="auto | cpu | cuda | cuda:N (transformers)")
    dtype: str = setting("auto", help="auto (bfloat16 on GPU, float32 on CPU) | float32 | bfloat16 | float16")
    tensor_parallel_size: int = setting(1, help="vllm", range="[1, inf)")
    concurrency: int = setting(16, help="requests in flight (server)", range="[1, inf)")
    request_timeout_s: float = setting(600.0, help="per request (server)", range="(0, inf)")
    server_model: str = setting("", help="server: the model name to request; empty: the first one /v1/models lists")

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"{self.key('backend')}: expected one of {', '.join(BACKENDS)}, got {self.backend!r}")


BACKENDS = ("auto", "transformers", "vllm")
DEFAULT_MAX_NEW_TOKENS = {"evalplus": 768, "evoeval": 768, "bigcodebench": 1280}


def _bar(total: int, desc: str):
    return tqdm(total=total, desc=desc, unit="prompt", file=sys.stderr)


class TransformersBackend:
    name = "transformers"

    def __init__(self, model_dir: str, cfg: GenerationConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = cfg.dtype
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        self.device, self.dtype, self.batch_size = device, dtype, cfg.batch_size
        self.threads = CPU_THREADS if device == "cpu" else None  # GPU kernels do not split over CPU threads
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()

    def generate(self, prompts: list[str], stops: list[str], max_new_tokens: int,
                 desc: str = "generating") -> list[str]:
        from megatron_snow.determinism import fixed_threads  # imports torch: only when generating

        if self.threads is None:
            return self._generate(prompts, stops, max_new_tokens, desc)
        with fixed_threads(self.threads):
            return self._generate(prompts, stops, max_new_tokens, desc)

    def determinism(self) -> dict:
        """What to record beside the results: the fixed CPU thread count (nothing on GPU)."""
        return {} if self.threads is None else {"torch_threads": self.threads, "deterministic_algorithms": True}

    def _generate(self, prompts: list[str], stops: list[str], max_new_tokens: int, desc: str) -> list[str]:
        import torch

        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths share a batch
        out: list[str] = [""] * len(prompts)
        bar = _bar(len(prompts), desc)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(self.device)
            with torch.no_grad():
                gen = self.model.generate(**enc, do_sample=False, temperature=None, top_p=None, top_k=None,
                                          max_new_tokens=max_new_tokens, stop_strings=stops or None,
                                          tokenizer=self.tokenizer, pad_token_id=self.tokenizer.pad_token_id)
            new = gen[:, enc["input_ids"].shape[1]:]
            for i, row in zip(idx, new):
                out[i] = truncate_at_stops(self.tokenizer.decode(row, skip_special_tokens=True), stops)
            bar.update(len(idx))
        bar.close()
        return out


class BackendUnavailable(ValueError):
    """The backend asked for cannot run here (one line naming the alternatives)."""


VLLM_MISSING = ("generation.backend=vllm: the vllm package is not installed here (it is a CUDA build for GPU nodes); "
                "serve the model with `vllm serve HF_DIR` and pass --server http://HOST:8000/v1 "
                "(any OpenAI-compatible server), or use generation.backend=transformers")


def require_vllm() -> None:
    """Fail in one line, before any work, when vLLM is asked for and absent."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise BackendUnavailable(VLLM_MISSING)


class VLLMBackend:
    name = "vllm"

    def __init__(self, model_dir: str, cfg: GenerationConfig):
        require_vllm()
        from vllm import LLM

        # vLLM's "auto" would run a float32 checkpoint in float16; bfloat16 is what the model was trained in
        self.dtype = "bfloat16" if cfg.dtype == "auto" else cfg.dtype
        self.llm = LLM(model=model_dir, tensor_parallel_size=cfg.tensor_parallel_size, dtype=self.dtype)

    def generate(self, prompts: list[str], stops: list[str], max_new_tokens: int,
                 desc: str = "generating") -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=stops)
        outs = self.llm.generate(prompts, params, use_tqdm=True)
        return [truncate_at_stops(o.outputs[0].text, stops) for o in outs]


class ServerBackend:
    name = "server"

    def __init__(self, base_url: str, cfg: GenerationConfig):
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key="EMPTY", timeout=cfg.request_timeout_s, max_retries=5)
        self.model = cfg.server_model or self.client.models.list().data[0].id
        self.concurrency = cfg.concurrency

    def _one(self, prompt: str, stops: list[str], max_new_tokens: int) -> str:
        greedy = {"do_sample": False, "max_new_tokens": max_new_tokens}
        r = self.client.completions.create(model=self.model, prompt=prompt, max_tokens=max_new_tokens, temperature=0.0,
                                           stop=stops or None, extra_body={"generation_config": json.dumps(greedy)})
        return truncate_at_stops(r.choices[0].text or "", stops)

    def generate(self, prompts: list[str], stops: list[str], max_new_tokens: int,
                 desc: str = "generating") -> list[str]:
        bar = _bar(len(prompts), desc)
        with ThreadPoolExecutor(self.concurrency) as ex:
            futures = [ex.submit(self._one, p, stops, max_new_tokens) for p in prompts]
            for f in futures:
                f.add_done_callback(lambda _: bar.update(1))
            out = [f.result() for f in futures]
        bar.close()
        return out


def vllm_usable() -> bool:
    try:
        import torch
        import vllm  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


def make_backend(cfg: GenerationConfig, model_dir: str | None = None, server: str | None = None):
    """The backend a run asked for; ``server`` wins, then ``backend`` (auto: vLLM on GPU when importable)."""
    if server:
        return ServerBackend(server, cfg)
    if model_dir is None:
        raise ValueError("a model directory or a server URL is needed to generate")
    backend = cfg.backend
    if backend == "auto":
        backend = "vllm" if vllm_usable() else "transformers"
    if backend == "vllm":
        return VLLMBackend(model_dir, cfg)
    if backend == "transformers":
        return TransformersBackend(model_dir, cfg)
    raise BackendUnavailable(f"generation.backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
