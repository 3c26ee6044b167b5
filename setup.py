"""megatron-snow: the Arctic-SnowCoder recipe on megatron-core."""
from setuptools import find_packages, setup

# torch is a range that the local CPU wheel (2.13.0) satisfies, so pip never
# pulls a multi-GB CUDA build where a CPU build is already installed.
INSTALL_REQUIRES = [
    "torch>=2.6",
    "megatron-core==0.16.1",
    "numpy",
    "pyyaml",
    "psutil",
    "tqdm",
    "sentencepiece",
    "tokenizers",
    "transformers",
    "datasets",
    "safetensors",
    "mpi4py",
    "mpich",
    "tensorboard",
    "xxhash",  # phase-1 data: fast 64-bit hashes for shingles, content and buckets
    "pyarrow",  # phase-1 data: The Stack parquet/arrow ingest
    "matplotlib",  # run reports: funnel, training curves, annotator alignment plots
    "openai", "httpx",  # phase-3 synthesis: the async client of OpenAI-compatible servers (vLLM, SGLang)
]

EXTRAS = {
    # Transformer Engine fused kernels; needs CUDA, install on GPU nodes only.
    "gpu": ["transformer_engine[pytorch]"],
    "dev": ["pytest", "pytest-timeout", "datasketch", "datatrove", "regex", "tokenizers",
            "transformers[serving]", "tree-sitter", "tree-sitter-javascript"],  # synthesis tests: real server, JS parser
    "wandb": ["wandb"],
}

setup(
    name="megatron-snow",
    version="0.1.0",
    description="Open, runnable Arctic-SnowCoder recipe: code data pipeline and megatron-core training",
    packages=find_packages(include=["megatron_snow", "megatron_snow.*"]),
    # benchmark copies (decontamination, alignment, evaluation) and editable prompt templates
    package_data={"megatron_snow": ["benchmark_data/*", "**/*.md", "**/*.txt", "**/*.yaml"]},
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    # one command line for every step: `megatron-snow STEP ...` == `python -m megatron_snow STEP ...`
    entry_points={"console_scripts": ["megatron-snow=megatron_snow.__main__:main"]},
)
