"""Asynchronous requests to an OpenAI-compatible server (vLLM, SGLang, ``transformers serve``).

The maintained ``openai`` async client, with what a long generation run needs
around it: at most ``concurrency`` requests in flight (a fixed pool of workers
pulling from a queue, so memory does not grow with the number of seeds), a
per-request timeout, retries with exponential backoff and jitter on timeouts,
dropped connections, malformed answers and 408/409/429/5xx answers (other 4xx
are not retried), and a progress bar with requests/s and output tokens/s. A
request that still fails is returned with its error kind (the caller counts
it), never raised - unless the server itself is gone: requests that could not
connect (or timed out) after every attempt are held back, and when
``max_unreachable`` of them are held, or some are left at the end, the
server is asked for its model list; if that fails too the run stops with
``ServerGone`` (held requests are not reported, so a resumed run asks again),
else they are reported as the failures of their own prompts.

Sampling settings reach every server: ``temperature``, ``top_p``,
``max_tokens`` and ``seed`` are standard fields (vLLM and SGLang honour them).
``transformers serve`` (read in its source, 5.25) takes ``do_sample`` from a
``generation_config`` JSON string in the body, and otherwise from the model's
generation config, so that field is sent when sampling, with
``sampling.extra_generation_config`` merged in (e.g. the model's
``{"eos_token_id": [...]}``, as the field replaces the model's); vLLM and
SGLang ignore it. With ``--continuous-batching``, though, its batching manager
is built once, at start, from the served model's ``generation_config.json``:
it samples only when that file says ``"do_sample": true``, and a request can
set only the temperature / top-k / top-p that the file itself sets (a
temperature 0 request becomes top-k 1, greedy, only when the file sets
``top_k``). Serve a model from which you sample there with, e.g.,
``{"do_sample": true, "temperature": 0.7, "top_k": 50, "top_p": 0.95}``, and
one decoded greedily without ``do_sample`` (as ``convert-to-hf`` writes
it): otherwise every answer is greedy, or sampled, whatever a request asks.
"""
from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from megatron_snow.config import Config, ConfigError, setting

RETRYABLE_STATUS = {408, 409, 429}
# A 4xx saying the prompt does not fit the model's context (vLLM: "maximum context length is N tokens" / "longer than
# the maximum model length"; SGLang: "longer than the model's context length"; transformers serve: "The prompt has N
# tokens, but the model takes at most M"; OpenAI: context_length_exceeded): the prompt's fault, never retried, and
# counted apart from other failures (``prompt_too_long``), since a shorter snippet or a longer context cures it.
PROMPT_TOO_LONG = re.compile(r"context length|context_length_exceeded|maximum model length|"
                             r"prompt has \d+ tokens, but the model takes at most", re.IGNORECASE)
SERVER_KINDS = ("connection", "timeout")  # failures that may mean the server is gone, not the prompt is bad


class ServerGone(RuntimeError):
    """The server stopped answering altogether (not one request's failure): stop, so a re-run resumes."""


@dataclass
class ServerConfig(Config):
    base_url: str = setting("http://127.0.0.1:8000/v1", help="the server's OpenAI API root")
    model: str = setting("", help="empty: the first model the server lists (GET /v1/models)")
    api_key: str = setting("EMPTY", help="local servers accept anything")
    api: str = setting("chat", help="chat (instruct models, chat template on the server) | completions (raw prompt)")
    concurrency: int = setting(64, help="requests in flight (per rank)", range=">= 1")
    timeout_s: float = setting(600.0, help="per request", range="> 0")
    max_attempts: int = setting(5, help="tries per request before it is counted as failed", range=">= 1")
    backoff_s: float = setting(1.0, help="first retry delay; doubles per retry, with jitter", range=">= 0")
    backoff_max_s: float = setting(60.0, help="longest retry delay")
    max_unreachable: int = setting(
        8, help="this many requests unable to connect (or timed out) and GET /models failing: stop (0: never)",
                range=">= 0")

    def validate(self) -> None:
        if self.api not in ("chat", "completions"):
            raise ConfigError(f"{self.key('api')} must be chat or completions, got {self.api!r}")


@dataclass
class SamplingConfig(Config):
    temperature: float = setting(0.0, help="Magicoder's OSS-Instruct decoded greedily; > 0 samples", range=">= 0")
    top_p: float = setting(1.0, help="nucleus sampling mass", range="(0, 1]")
    max_tokens: int = setting(2048, help="answers that hit it are truncated files (dropped)", range=">= 1")
    seed: int = setting(0, help="per-request seeds derive from it (reproducible sampling on vLLM)")
    generation_config: bool = setting(
        True, help="when sampling, also send transformers-serve's generation_config field")
    extra_generation_config: dict[str, Any] = setting(
        factory=dict, help="merged into it, e.g. {eos_token_id: [128001, 128009]}")


@dataclass
class Result:
    """What one request came back with (``error`` set when every attempt failed)."""

    index: int
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    error: str | None = None
    errors: list[str] = field(default_factory=list)  # kinds of the failed attempts, in order
    detail: str = ""  # the last failed attempt's message (e.g. the server's answer), when ``error`` is set


def request_body(sampling: SamplingConfig, request_seed: int, api: str) -> dict[str, Any]:
    """The sampling fields of a request, for both the standard API and transformers serve."""
    body: dict[str, Any] = {"max_tokens": sampling.max_tokens, "temperature": sampling.temperature,
                            "top_p": sampling.top_p, "seed": request_seed}
    if api == "completions":
        body["stop"] = ["```"]
    if sampling.generation_config and sampling.temperature > 0:
        gen = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
               "max_new_tokens": sampling.max_tokens}
        gen.update(sampling.extra_generation_config)
        body["extra_body"] = {"generation_config": json.dumps(gen, sort_keys=True)}
    return body


def error_message(exc: BaseException) -> str:
    """The exception's text and, for an HTTP error, the body the server sent: the openai client's text keeps only
    a ``message`` field, where e.g. transformers serve puts its reason in ``detail``."""
    text = str(exc)
    body = getattr(exc, "body", None)
    if body is not None:
        text += " " + (body if isinstance(body, str) else json.dumps(body, default=str))
    return text[:500]


def classify_error(exc: BaseException) -> tuple[str, bool]:
    """(kind, retryable) of a failed request."""
    import httpx
    import openai

    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return "timeout", True
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
        return "connection", True
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        if 400 <= code < 500 and PROMPT_TOO_LONG.search(error_message(exc)):
            return "prompt_too_long", False
        return f"http_{code}", code >= 500 or code in RETRYABLE_STATUS
    if isinstance(exc, (openai.APIResponseValidationError, ValueError, KeyError, IndexError, TypeError,
                        AttributeError)):
        return "bad_response", True
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout", True
    return type(exc).__name__, False


def make_client(cfg: ServerConfig):
    import httpx
    import openai

    limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(cfg.timeout_s, connect=min(30.0, cfg.timeout_s)))
    # max_retries=0: retries are ours (counted, with our backoff), not the client's silent ones.
    return openai.AsyncOpenAI(base_url=cfg.base_url, api_key=cfg.api_key, max_retries=0, timeout=cfg.timeout_s,
                              http_client=http)


async def server_answers(client, cfg: ServerConfig) -> bool:
    """Whether the server still answers (GET /models within the request timeout, at most 30 s)."""
    try:
        await asyncio.wait_for(client.models.list(), min(cfg.timeout_s, 30.0))
        return True
    except Exception:  # noqa: BLE001 - any failure: it does not answer
        return False


async def resolve_model(cfg: ServerConfig) -> str:
    """The configured model, or the first one the server lists."""
    if cfg.model:
        return cfg.model
    client = make_client(cfg)
    try:
        models = await client.models.list()
        ids = [m.id for m in models.data]
    finally:
        await client.close()
    if not ids:
        raise ValueError(f"the server at {cfg.base_url} lists no model; set server.model=...")
    return ids[0]


async def request_once(client, cfg: ServerConfig, model: str, prompt: Any, body: dict) -> Result:
    """One attempt; raises on failure. ``prompt`` is a message list (chat) or a string (completions)."""
    if cfg.api == "chat":
        r = await client.chat.completions.create(model=model, messages=prompt, **body)
        choice = r.choices[0]
        text = choice.message.content or ""
    elif cfg.api == "completions":
        r = await client.completions.create(model=model, prompt=prompt, **body)
        choice = r.choices[0]
        text = choice.text or ""
    else:
        raise ValueError(f"server.api must be chat or completions, got {cfg.api!r}")
    if not isinstance(text, str):  # the client does not validate types: a server can send anything
        raise ValueError(f"the answer's content is a {type(text).__name__}, not text")
    finish = choice.finish_reason if isinstance(choice.finish_reason, str) else None
    usage = r.usage

    def count(name: str) -> int:
        v = getattr(usage, name, 0)
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0

    return Result(index=-1, text=text, finish_reason=finish, prompt_tokens=count("prompt_tokens"),
                  completion_tokens=count("completion_tokens"))


async def request_with_retries(client, cfg: ServerConfig, model: str, index: int, prompt: Any, body: dict) -> Result:
    rng = random.Random(index)
    errors: list[str] = []
    for attempt in range(1, cfg.max_attempts + 1):
        try:
            res = await asyncio.wait_for(request_once(client, cfg, model, prompt, body), cfg.timeout_s + 5)
            res.index, res.attempts, res.errors = index, attempt, errors
            return res
        except Exception as e:  # noqa: BLE001 - every failure is classified and counted
            kind, retryable = classify_error(e)
            errors.append(kind)
            if not retryable or attempt == cfg.max_attempts:
                return Result(index=index, attempts=attempt, error=kind, errors=errors, detail=error_message(e))
            delay = min(cfg.backoff_max_s, cfg.backoff_s * 2 ** (attempt - 1)) * (0.5 + rng.random())
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class Progress:
    """A tqdm bar with requests/s and output tokens/s in its postfix."""

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="req", disable=not enabled, dynamic_ncols=True)
        self.start = time.perf_counter()
        self.tokens = 0
        self.done = 0
        self.failed = 0
        self._last = 0.0

    def update(self, res: Result) -> None:
        self.done += 1
        self.tokens += res.completion_tokens
        self.failed += res.error is not None
        self.bar.update(1)
        now = time.perf_counter()
        if now - self._last > 0.5 or self.done == self.bar.total:
            self._last = now
            dt = max(now - self.start, 1e-9)
            self.bar.set_postfix({"req/s": f"{self.done / dt:.2f}", "tok/s": f"{self.tokens / dt:.1f}",
                                  "failed": self.failed}, refresh=False)

    def close(self) -> dict:
        self.bar.close()
        dt = max(time.perf_counter() - self.start, 1e-9)
        return {"requests": self.done, "failed": self.failed, "completion_tokens": self.tokens, "seconds": dt,
                "requests_per_s": self.done / dt, "tokens_per_s": self.tokens / dt}


async def run_requests(cfg: ServerConfig, model: str, items: Iterable[tuple[int, Any, int]], total: int,
                       sampling: SamplingConfig, on_result: Callable[[Result], None], progress: bool = True,
                       desc: str = "synthesize") -> dict:
    """Send every ``(index, prompt, request_seed)`` with at most ``cfg.concurrency`` in flight.

    ``on_result`` is called once per item as its answer (or final error) arrives, in completion
    order. Returns throughput statistics.
    """
    if cfg.concurrency < 1 or cfg.max_attempts < 1 or cfg.timeout_s <= 0:
        raise ValueError("server.concurrency and server.max_attempts must be >= 1 and server.timeout_s > 0")
    client = make_client(cfg)
    bar = Progress(total, desc, progress)
    queue: asyncio.Queue = asyncio.Queue(maxsize=2 * cfg.concurrency)
    held: list[Result] = []  # failed to reach the server after every attempt: reported once it answers again
    probe = asyncio.Lock()
    stop = asyncio.Event()  # the server is gone: send nothing more, let the requests in flight end
    gone: list[ServerGone] = []

    def report(res: Result) -> None:
        on_result(res)
        bar.update(res)

    async def check_server() -> None:
        async with probe:
            if not held or stop.is_set():
                return
            if not await server_answers(client, cfg):
                kinds = sorted({r.error for r in held})
                gone.append(ServerGone(f"the server at {cfg.base_url} stopped answering ({len(held)} requests "
                                       f"failed after every attempt: {', '.join(kinds)}; GET /models fails too)"))
                stop.set()
                return
            while held:
                report(held.pop(0))

    async def worker() -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            if stop.is_set():
                continue  # drain the queue so that the producer ends
            index, prompt, seed = item
            res = await request_with_retries(client, cfg, model, index, prompt, request_body(sampling, seed, cfg.api))
            if cfg.max_unreachable and res.error in SERVER_KINDS:
                held.append(res)
                if len(held) >= cfg.max_unreachable:
                    await check_server()
                continue
            report(res)

    async def producer() -> None:
        for item in items:
            if stop.is_set():
                break
            await queue.put(item)
        for _ in range(cfg.concurrency):
            await queue.put(None)

    # A worker that raises (e.g. on_result cannot write) ends the run instead of blocking the producer.
    tasks = [asyncio.create_task(producer())] + [asyncio.create_task(worker()) for _ in range(cfg.concurrency)]
    try:
        await asyncio.gather(*tasks)
        await check_server()  # the last requests failed to connect: is the server still there?
        if gone:
            raise gone[0]
    finally:
        for t in tasks:
            t.cancel()
        await client.close()
    return bar.close()
