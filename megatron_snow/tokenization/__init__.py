"""Code tokenizer (SentencePiece or Hugging Face) and Megatron indexed datasets."""
from megatron_snow.tokenization.tokenizer import CodeTokenizer, TokenizerError, load_tokenizer

__all__ = ["CodeTokenizer", "TokenizerError", "load_tokenizer"]
