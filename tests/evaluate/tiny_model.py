"""A tiny Hugging Face Llama trained here (no hub) to complete a few benchmark prompts with their solutions.

Base-model completion, as the evaluation runs it: the model sees the prompt
(trailing newlines stripped) and is trained, on the completion tokens only,
to continue with ``"\\n" + canonical_solution`` and then EOS. The tokenizer is a
byte-level BPE trained on those texts; prompt and completion are tokenized
separately and concatenated, which is exactly the prefix generation sees.
Training stops once teacher-forced argmax reproduces every completion token
(what greedy decoding then reproduces).
"""
from __future__ import annotations

from pathlib import Path

EOS, PAD = "<|eos|>", "<|pad|>"


def build_tokenizer(texts: list[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)


def _memorized(model, rows, masks) -> bool:
    import torch

    with torch.no_grad():
        for r, m in zip(rows, masks):
            pred = model(input_ids=torch.tensor([r])).logits[0, :-1].argmax(-1)
            sel = torch.tensor(m[1:]).bool()
            if not torch.equal(pred[sel], torch.tensor(r[1:])[sel]):
                return False
    return True


def train_tiny_llama(out_dir: Path, pairs: list[tuple[str, str]], max_steps: int = 800, seed: int = 0) -> Path:
    """Save a tiny LlamaForCausalLM + tokenizer to ``out_dir`` that completes each (prompt, completion) pair."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer([p + c for p, c in pairs])
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    rows, masks = [], []
    for prompt, completion in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p + c)
        masks.append([0] * len(p) + [1] * len(c))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, m) in enumerate(zip(rows, masks)):
        ids[i, :len(r)] = torch.tensor(r)
        labels[i, :len(r)] = torch.tensor([t if k else -100 for t, k in zip(r, m)])
        attn[i, :len(r)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for step in range(max_steps):
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24 and loss.item() < 0.05:
            model.eval()
            if _memorized(model, rows, masks):
                break
            model.train()
    model.eval()
    if not _memorized(model, rows, masks):
        raise RuntimeError(f"tiny llama did not learn its {len(pairs)} completions in {max_steps} steps")
    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, max_new_tokens=256)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)
