"""A real OpenAI-compatible LLM server on localhost for tests: a tiny Llama served by `transformers serve`.

Nothing comes from the hub: the tokenizer is a byte-level BPE trained here on a few strings
(wrapped in ``PreTrainedTokenizerFast`` with a chat template) and the model is a
``LlamaForCausalLM`` built from a ``LlamaConfig``. With ``pairs`` the model is trained until it
answers each prompt with its answer under greedy decoding (checked locally before serving), so a
test knows exactly what the server will say; without it the model is random (answers are noise that
ends at ``max_tokens``).

The server runs as its own process group with a bounded address space (the server was seen growing
to 14 GB resident under load) and a small KV cache, and is always killed on exit.

Use::

    from llm_server import build_tiny_llama, serve
    model_dir = build_tiny_llama(tmp / "model", pairs=[(messages_or_text, answer), ...])
    with serve(model_dir, log_path=tmp / "server.log") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none")
        client.chat.completions.create(model=server.model, messages=[...])

The session-scoped pytest fixture ``tiny_llm_server`` (random model) is registered by importing it
in a conftest. Import this file by location, not as ``tests.llm_server`` (a site-packages package
named ``tests``, shipped by some wheels, shadows the repository's folder)::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ folder
    from llm_server import tiny_llm_server  # noqa: F401
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pytest

# special tokens of the tiny chat format
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
ROLES = ("system", "user", "assistant")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SERVER_MEMORY_LIMIT = 6 * 1024**3  # address-space bound of the server process (bytes)

Messages = list[dict[str, str]]
Prompt = Messages | str  # chat messages, or the raw text of a completions request


@dataclass
class LLMServer:
    """A running server: ``base_url`` ends in ``/v1`` (what the openai client takes)."""

    base_url: str
    model: str
    process: subprocess.Popen
    log_path: Path

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScriptProcess:
    """A small HTTP server script of the tests run as its own process on a free port (killed on exit).

    ``probe`` is a path that must answer (any HTTP status) before the server counts as started.
    """

    def __init__(self, script: Path, *args: str, probe: str = "/v1/models", **opts):
        self.port = free_port()
        cmd = [sys.executable, str(script), "--port", str(self.port), *args]
        for k, v in opts.items():
            cmd += [f"--{k.replace('_', '-')}", str(v)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}{probe}", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # answering, with an error status
            except OSError as err:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError(f"{Path(script).name} did not start") from err
                time.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def chat_prompt(messages: Messages) -> str:
    """The text the chat template makes of ``messages`` with the generation prompt (what the server feeds the model)."""
    out = BOS
    for m in messages:
        out += f"<|{m['role']}|>{m['content']}{EOS}"
    return out + "<|assistant|>"


def prompt_text(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else chat_prompt(prompt)


def _build_tokenizer(texts: Sequence[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS] + [f"<|{r}|>" for r in ROLES]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts) or ["def f(x):\n    return x\n"], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   chat_template=CHAT_TEMPLATE)


def _train_pairs(model, tokenizer, pairs: Sequence[tuple[Prompt, str]], max_steps: int, seed: int) -> None:
    """Train until greedy decoding of every prompt gives exactly its answer (loss on answer tokens only)."""
    import torch

    torch.manual_seed(seed)
    rows, masks = [], []
    for prompt, answer in pairs:
        p = tokenizer(prompt_text(prompt), add_special_tokens=False)["input_ids"]
        a = tokenizer(answer + EOS, add_special_tokens=False)["input_ids"]
        rows.append(p + a)
        masks.append([0] * len(p) + [1] * len(a))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    for i, (r, m) in enumerate(zip(rows, masks)):
        ids[i, : len(r)] = torch.tensor(r)
        labels[i, : len(r)] = torch.tensor([t if k else -100 for t, k in zip(r, m)])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    model.train()
    for step in range(max_steps):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24 and loss.item() < 0.02 and _memorized(model, tokenizer, rows, masks):
            break
    model.eval()
    print(f"tiny llama: {step + 1} training steps, loss {loss.item():.4f}", file=sys.stderr)
    if not _memorized(model, tokenizer, rows, masks):
        raise RuntimeError(f"tiny llama did not memorize its {len(pairs)} answers in {max_steps} steps")


def _memorized(model, tokenizer, rows, masks) -> bool:
    """Teacher-forced argmax equals every answer token (equivalent to greedy decoding reproducing it)."""
    import torch

    model.eval()
    with torch.no_grad():
        for r, m in zip(rows, masks):
            x = torch.tensor([r])
            pred = model(input_ids=x).logits[0, :-1].argmax(-1)
            want = torch.tensor(r[1:])
            sel = torch.tensor(m[1:]).bool()
            if not torch.equal(pred[sel], want[sel]):
                model.train()
                return False
    model.train()
    return True


def build_tiny_llama(out_dir: Path, *, pairs: Sequence[tuple[Prompt, str]] = (), extra_texts: Sequence[str] = (),
                     hidden: int = 64, layers: int = 2, vocab_size: int = 512, max_steps: int = 600,
                     generation: dict | None = None, seed: int = 0) -> Path:
    """Save a tiny Llama + tokenizer (with chat template) to ``out_dir``; with ``pairs`` it answers them greedily.

    ``generation`` overrides the saved generation config (greedy by default), e.g. ``{"do_sample": True, ...}``.

    A pair's prompt is a chat message list (answered on /v1/chat/completions) or a raw string
    (answered on /v1/completions, whose prompt is encoded without special tokens).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    texts = [prompt_text(p) + a for p, a in pairs] + list(extra_texts)
    tokenizer = _build_tokenizer(texts, vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    if pairs:
        with torch.enable_grad():
            _train_pairs(model, tokenizer, pairs, max_steps, seed)
    model.generation_config = GenerationConfig(**{
        "do_sample": False, "eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.bos_token_id,
        "pad_token_id": tokenizer.pad_token_id, "max_new_tokens": 256, **(generation or {}),
    })
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _limit_memory(limit: int):
    def preexec() -> None:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return preexec


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def start_server(model_dir: Path, *, log_path: Path, port: int | None = None, startup_timeout: float = 180.0,
                 memory_limit: int = SERVER_MEMORY_LIMIT) -> LLMServer:
    """Start ``transformers serve`` on ``model_dir`` and wait for ``/health``; the caller must ``stop_server``."""
    port = port or free_port()
    model = str(model_dir)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", model, "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--continuous-batching", "--cb-num-blocks", "128",
           "--cb-block-size", "32", "--default-seed", "0"]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_limit_memory(memory_limit))
    log.close()
    server = LLMServer(f"http://127.0.0.1:{port}/v1", model, proc, log_path)
    deadline = time.monotonic() + startup_timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(server.root_url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return server
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve not healthy after {startup_timeout:.0f} s:\n"
                                   f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
    except BaseException:
        _kill(proc)
        raise


def stop_server(server: LLMServer) -> None:
    _kill(server.process)


@contextlib.contextmanager
def serve(model_dir: Path, *, log_path: Path, **kwargs) -> Iterator[LLMServer]:
    """Context manager: a running server on ``model_dir``, killed on exit (also on failure)."""
    server = start_server(model_dir, log_path=log_path, **kwargs)
    try:
        yield server
    finally:
        stop_server(server)


def warm_up(server: LLMServer) -> None:
    """One short request: the first batch of a continuous-batching server is slow (compiles / allocates)."""
    body = json.dumps({"model": server.model, "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 4}).encode()
    req = urllib.request.Request(server.base_url + "/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()


@pytest.fixture(scope="session")
def tiny_llm_server(tmp_path_factory) -> Iterator[LLMServer]:
    """A random tiny Llama behind `transformers serve` for the whole session (killed at the end)."""
    root = tmp_path_factory.mktemp("tiny_llm")
    model_dir = build_tiny_llama(root / "model")
    with serve(model_dir, log_path=root / "server.log") as server:
        warm_up(server)
        yield server
