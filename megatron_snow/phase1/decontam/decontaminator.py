"""The decontaminator: the index (built, or from the process / disk cache) and ``check`` over the rules."""
from __future__ import annotations

from megatron_snow.phase1.decontam import cache
from megatron_snow.phase1.decontam.benchmarks import CodeItem, TextItem
from megatron_snow.phase1.decontam.config import DecontamConfig
from megatron_snow.phase1.decontam.index import Index
from megatron_snow.phase1.decontam.prefilter import Prefilter
from megatron_snow.phase1.decontam.rules import Match, code_match, text_match
from megatron_snow.phase1.decontam.streams import code_streams


class Decontaminator:
    """Index of the benchmarks' text and code; ``check(text)`` says whether (and why) a file is contaminated.

    Built from the benchmark files unless ``items`` / ``code_units`` are given; a built index is kept in
    this process and on disk (``cache_dir``), keyed by ``index_key``, and loaded from there next time."""

    def __init__(self, cfg: DecontamConfig, items: list[TextItem] | None = None,
                 code_units: list[CodeItem] | None = None):
        self.cfg = cfg
        if items is not None or code_units is not None:
            self.index, self.loaded_from = Index.build(cfg, items, code_units), "built"
        else:  # loaded_from: built | memory | disk (for tests and logs)
            self.index, self.loaded_from = cache.load_index(cfg, lambda: Index.build(cfg))

    @property
    def benchmarks(self) -> list[str]:
        """The benchmarks indexed (those found)."""
        return self.index.benchmarks

    @property
    def patterns(self) -> list:
        """The substring rule's patterns."""
        return self.index.patterns

    @property
    def ngram_keys(self):
        """The n-gram rule's hashes."""
        return self.index.ngram_keys

    @property
    def prefilter(self) -> Prefilter | None:
        return self.index.prefilter

    def check(self, text: str, language: str | None = None) -> Match | None:
        """None if clean, else the ``Match`` of the first rule that fires."""
        fast = code_streams(text, language) if self.index.code_units else None  # the words too, most often
        hit = text_match(self.index, self.cfg, text, None if fast is None else fast.words)
        if hit is not None:
            return hit
        if self.index.prefilter is not None and not self.index.prefilter.passes(text, language):
            return None
        return code_match(self.index, self.cfg, text, language, fast)
