#!/usr/bin/env python
"""Peak memory (RSS) of checkpoint conversion at paper scale, both ways, against the model's size.

Builds a Hugging Face Llama of random weights with the shape of a training config (default:
the 1.3B of examples/snowcoder_1.3b/phase1.yaml), written tensor by tensor so this script
itself stays small, then runs the two real tools as subprocesses and samples the resident
memory of each (process tree included) every 0.1 s:

  convert_from_hf.py  HF  -> megatron-snow checkpoint
  convert_to_hf.py    checkpoint -> HF (and every tensor compared with the source, bitwise)

  python bench/bench_convert_memory.py                       # 1.3B, fp32 (needs ~17 GB of disk)
  python bench/bench_convert_memory.py --dtype bf16 --work /scratch/convert
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from machine import run_info  # noqa: E402


def random_hf_model(cfg_path: str, out: Path, dtype: torch.dtype) -> int:
    """A random LlamaForCausalLM directory of the config's shape; returns its parameter count."""
    from megatron_snow.convert.mapping import hf_config_dict, shape_of
    from megatron_snow.convert.to_hf import ShardWriter
    from megatron_snow.training.config import load_train_config

    cfg = load_train_config(cfg_path)
    s = shape_of(cfg.model, cfg.model.vocab_size)
    out.mkdir(parents=True, exist_ok=True)
    w = ShardWriter(out, 2 * 2**30)
    g = torch.Generator().manual_seed(0)

    def rnd(*shape, std=0.02):
        return (torch.randn(*shape, generator=g) * std).to(dtype)

    h, f, d = s.hidden_size, s.ffn_hidden_size, s.head_dim
    n = 0
    tensors = [("model.embed_tokens.weight", (s.vocab_size, h))]
    for i in range(s.num_layers):
        p = f"model.layers.{i}."
        tensors += [(p + "input_layernorm.weight", (h,)), (p + "post_attention_layernorm.weight", (h,)),
                    (p + "self_attn.q_proj.weight", (s.num_attention_heads * d, h)),
                    (p + "self_attn.k_proj.weight", (s.num_query_groups * d, h)),
                    (p + "self_attn.v_proj.weight", (s.num_query_groups * d, h)),
                    (p + "self_attn.o_proj.weight", (h, s.num_attention_heads * d)),
                    (p + "mlp.gate_proj.weight", (f, h)), (p + "mlp.up_proj.weight", (f, h)),
                    (p + "mlp.down_proj.weight", (h, f))]
    tensors.append(("model.norm.weight", (h,)))
    if not s.tie_embeddings:
        tensors.append(("lm_head.weight", (s.vocab_size, h)))
    for name, shape in tensors:
        t = 1 + rnd(*shape, std=0.1) if name.endswith("norm.weight") else rnd(*shape)
        w.add(name, t)
        n += t.numel()
    w.finish()
    name = {torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype]
    hf = hf_config_dict(s, cfg.model.rotary_base, cfg.model.norm_epsilon, cfg.model.init_method_std,
                        cfg.data.seq_length, name, {"eos_token_id": 2, "pad_token_id": 3, "bos_token_id": 1})
    (out / "config.json").write_text(json.dumps(hf, indent=2))
    return n


def run_measured(cmd: list[str]) -> tuple[float, float, float]:
    """(peak PSS of the process tree, peak RSS of the tool's own process, seconds), in bytes.

    PSS splits pages shared between processes (dist_checkpointing's writer workers, mapped
    files) among them, so the tree's sum is the memory really in use; summed RSS would count
    shared pages once per process."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak_pss = peak_rss = 0
    while proc.poll() is None:
        try:
            pss = 0
            for p in [root] + root.children(recursive=True):
                try:
                    pss += p.memory_full_info().pss
                except psutil.Error:
                    pass
            peak_pss = max(peak_pss, pss)
            peak_rss = max(peak_rss, root.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{err[-3000:]}")
    return peak_pss, peak_rss, time.time() - t0


def compare(a: Path, b: Path) -> int:
    """Tensors compared bitwise one at a time; returns how many."""
    from safetensors import safe_open

    def index(d: Path) -> dict:
        return json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]

    ia, ib = index(a), index(b)
    if ia.keys() != ib.keys():
        raise SystemExit(f"different tensor names: {sorted(set(ia) ^ set(ib))[:5]}")
    for name in ia:
        with safe_open(str(a / ia[name]), "pt") as fa, safe_open(str(b / ib[name]), "pt") as fb:
            if not torch.equal(fa.get_tensor(name), fb.get_tensor(name)):
                raise SystemExit(f"{name} differs after the round trip")
    return len(ia)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "examples" / "snowcoder_1.3b" / "phase1.yaml"))
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--work", help="scratch directory (default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path, help="write the run here (docs/results/convert_memory.json is such a "
                                                   "run: tests/test_claims.py rebuilds the README's sentence from it)")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        t0 = time.time()
        params = random_hf_model(args.config, work / "hf", dtype)
        model_bytes = params * torch.tensor([], dtype=dtype).element_size()
        print(f"random HF model: {params / 1e9:.3f}B parameters, {model_bytes / 2**30:.2f} GiB "
              f"({args.dtype}), written in {time.time() - t0:.0f}s", flush=True)
        tools = REPO / "tools" / "checkpoint"
        rows = []
        rows.append(("convert_from_hf (HF -> checkpoint)", *run_measured(
            [sys.executable, str(tools / "convert_from_hf.py"), "--load", str(work / "hf"),
             "--save", str(work / "ckpt"), "--dtype", args.dtype, "--no-progress"])))
        rows.append(("convert_to_hf (checkpoint -> HF)", *run_measured(
            [sys.executable, str(tools / "convert_to_hf.py"), "--load", str(work / "ckpt"),
             "--save", str(work / "back"), "--dtype", args.dtype, "--no-progress"])))
        n = compare(work / "hf", work / "back")
        print(f"\n{'step':<36} {'tree PSS GiB':>12} {'x model':>8} {'tool RSS GiB':>12} {'x model':>8} {'seconds':>8}")
        for name, pss, rss, secs in rows:
            print(f"{name:<36} {pss / 2**30:>12.2f} {pss / model_bytes:>8.2f} {rss / 2**30:>12.2f} "
                  f"{rss / model_bytes:>8.2f} {secs:>8.0f}")
        print(f"\nround trip: {n} tensors bitwise equal")
        if args.json:
            args.json.write_text(json.dumps({
                "config": os.path.relpath(Path(args.config).resolve(), REPO),
                "dtype": args.dtype, "params": params, "model_gib": round(model_bytes / 2**30, 3),
                "steps": [{"step": name, "tree_pss_gib": round(pss / 2**30, 3), "tool_rss_gib": round(rss / 2**30, 3),
                           "seconds": round(secs, 1)} for name, pss, rss, secs in rows],
                "bitwise_equal_tensors": n, "run": run_info(load_start)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
