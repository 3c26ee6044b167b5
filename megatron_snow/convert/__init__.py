"""Checkpoint conversion between megatron-snow and Hugging Face Llama, both ways, with the tokenizer.

``to_hf.convert_to_hf`` (megatron-snow -> ``LlamaForCausalLM`` directory),
``from_hf.convert_from_hf`` (Hugging Face Llama -> a checkpoint that
``checkpoint.load_from`` starts a phase from), ``hf_tokenizer`` (our
SentencePiece model as an exact Hugging Face fast tokenizer) and ``mapping``
(the weight layout of both sides).
"""
