"""megatron-snow: the Arctic-SnowCoder recipe, from raw code to a trained code model."""

__version__ = "0.1.0"
