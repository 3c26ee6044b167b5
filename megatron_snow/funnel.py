"""The funnel every data stage reports: documents in = kept + dropped per reason.

Counts are kept per language, for documents and bytes, and merge across
shards and MPI ranks by addition, so the totals do not depend on how the
work was split.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any


class FunnelError(AssertionError):
    pass


class Funnel:
    def __init__(self, stage: str):
        self.stage = stage
        # language -> counter name -> [docs, bytes]; counter names: "in", "kept", "dropped:<reason>"
        self.counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))

    def _add(self, language: str, name: str, nbytes: int, docs: int = 1) -> None:
        c = self.counts[language or "unknown"][name]
        c[0] += docs
        c[1] += nbytes

    def seen(self, language: str, nbytes: int, docs: int = 1) -> None:
        self._add(language, "in", nbytes, docs)

    def kept(self, language: str, nbytes: int, docs: int = 1) -> None:
        self._add(language, "kept", nbytes, docs)

    def dropped(self, language: str, nbytes: int, reason: str, docs: int = 1) -> None:
        self._add(language, f"dropped:{reason}", nbytes, docs)

    # -- combining ---------------------------------------------------------
    def merge(self, other: "Funnel | dict") -> "Funnel":
        data = other.to_dict()["languages"] if isinstance(other, Funnel) else other["languages"]
        for lang, names in data.items():
            for name, (docs, nbytes) in names.items():
                self._add(lang, name, nbytes, docs)
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "Funnel":
        return cls(d["stage"]).merge(d)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "languages": {
                lang: {name: list(v) for name, v in sorted(names.items())}
                for lang, names in sorted(self.counts.items())
            },
        }

    # -- reading -----------------------------------------------------------
    def total(self, name: str) -> tuple[int, int]:
        docs = nbytes = 0
        for names in self.counts.values():
            if name in names:
                docs += names[name][0]
                nbytes += names[name][1]
        return docs, nbytes

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for names in self.counts.values():
            for name, (docs, _) in names.items():
                if name.startswith("dropped:"):
                    out[name.split(":", 1)[1]] += docs
        return dict(sorted(out.items()))

    def check(self) -> None:
        """Raise if any language's documents in != kept + dropped."""
        for lang, names in self.counts.items():
            n_in = names["in"][0] if "in" in names else 0
            n_out = sum(v[0] for k, v in names.items() if k == "kept" or k.startswith("dropped:"))
            if n_in != n_out:
                raise FunnelError(f"{self.stage}/{lang}: {n_in} documents in but {n_out} kept+dropped")

    def table(self) -> str:
        reasons = sorted({k for names in self.counts.values() for k in names if k.startswith("dropped:")})
        cols = ["language", "in", "in_MB", "kept", "kept_MB"] + [r.split(":", 1)[1] for r in reasons]
        rows = []
        for lang in sorted(self.counts) + ["TOTAL"]:
            if lang == "TOTAL":
                get = self.total
            else:
                names = self.counts[lang]
                get = lambda n, names=names: tuple(names[n]) if n in names else (0, 0)  # noqa: E731
            i, k = get("in"), get("kept")
            rows.append([lang, str(i[0]), f"{i[1] / 1e6:.2f}", str(k[0]), f"{k[1] / 1e6:.2f}"]
                        + [str(get(r)[0]) for r in reasons])
        widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(cols)]
        fmt = lambda cells: "  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
        lines = [f"== funnel: {self.stage} ==", fmt(cols), fmt(["-" * w for w in widths])]
        lines += [fmt(r) for r in rows]
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        from megatron_snow.atomic import atomic_write_json

        self.check()
        atomic_write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> "Funnel":
        return cls.from_dict(json.loads(Path(path).read_text()))
