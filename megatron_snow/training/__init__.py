"""Pretraining on megatron-core: configs, the CPU compatibility layer, model,
data, checkpoints, logging and the training loop (entry point: pretrain_gpt.py)."""
