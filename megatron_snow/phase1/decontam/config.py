"""Settings of benchmark decontamination; each range and rule is checked here, once."""
from __future__ import annotations

from dataclasses import dataclass

from megatron_snow.config import Config, ConfigError, setting


@dataclass
class DecontamConfig(Config):
    enabled: bool = setting(True, help="drop files that hold benchmark text or code")
    benchmarks_dir: str | None = setting(
        None, help="directory of <name>.jsonl.gz files; None: megatron_snow.benchmarks default")
    benchmarks: list[str] = setting(factory=list, help="file stems to use; empty: every known file found")
    online: bool = setting(False, help="fetch benchmarks missing locally with `datasets`")
    ngram: int = setting(10, help="words per n-gram of the text rule", range=">= 1")
    ngram_max_items: int = setting(
        10, help="n-grams found in more benchmark items than this are boilerplate", range=">= 1")
    min_substring_chars: int = setting(
        50, help="shorter docstrings/solutions would match ordinary code", range=">= 1")
    require_benchmarks: bool = setting(True, help="error if no benchmark data is found")
    code_rules: bool = setting(True, help="the benchmark_code* / benchmark_test rules on normalised code")
    code_ngram: int = setting(10, help="tokens per k-gram of the normalised stream", range="[2, 64]")
    code_containment: float = setting(
        0.7, range="[0.5, 1]",
        help="share of a function's / test block's k-grams the file must hold (0.7: a copy with a line inserted, "
             "a loop rewritten or a helper pulled out still matches; no more false positives than 0.8 on 1,500 "
             "real files)")
    code_long_grams: int = setting(20, help="functions with fewer k-grams need all of them, contiguous", range=">= 1")
    code_min_grams: int = setting(
        6, help="functions / test blocks with fewer k-grams (code_ngram + 5 tokens) take no part", range=">= 1")
    code_max_items: int = setting(
        10, help="k-grams found in more benchmark items than this are idioms, left out", range=">= 1")
    prefilter: bool = setting(
        False, help="tokenize only files whose skeleton shares keys with a code unit (same verdicts); off: on "
                    "real code it passes most files and costs more than it saves (bench/bench_decontam.py)")
    code_min_named_grams: int = setting(
        3, help="short functions as written (names kept): at least code_ngram + 2 tokens", range=">= 1")
    cache_dir: str | None = setting(
        None, help="built indexes are kept here, keyed by the benchmark files' content + these settings; "
                   "None: $XDG_CACHE_HOME (or ~/.cache)/megatron_snow/decontam; \"\": not kept on disk")

    def validate(self) -> None:
        if self.code_long_grams < self.code_min_grams:
            raise ConfigError(f"code_long_grams={self.code_long_grams} is below code_min_grams="
                              f"{self.code_min_grams}: short functions need all their k-grams, long ones a share")
