"""Test data of phase-3 synthesis: a small phase-2 dataset, a short prompt template, and the answer
the tiny served model is trained to give for each seed (one answer per outcome the funnel counts)."""
from __future__ import annotations

from pathlib import Path

from megatron_snow import records
from megatron_snow.benchmarks import benchmark_path, read_benchmark
from megatron_snow.records import CodeRecord
from megatron_snow.synthesis.prompts import load_template
from megatron_snow.synthesis.seeds import select_seeds

# A short template keeps the tiny model's prompts short (training and serving stay fast); the
# shipped template is tested on its own.
TEMPLATE = """# test template
### system
Write $language.
### user
Snippet:
$snippet
File in $language:
### completion
Snippet:
$snippet
A $language file:
```$fence
"""

GOOD_A = '''"""Running totals of a list of numbers."""


def running_totals(values):
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


if __name__ == "__main__":
    print(running_totals([1, 2, 3]))
'''
GOOD_B = '''"""Count the words of a text, most frequent first."""
from collections import Counter


def top_words(text, k=3):
    return Counter(text.lower().split()).most_common(k)


print(top_words("a b a c b a"))
'''
NEAR_A = GOOD_A.replace("Running totals of", "The running totals of")
BAD_PY = "def broken(x:\n    return x +\n"
GOOD_SH = "#!/bin/bash\n# print the numbers 1 to 3\nfor i in 1 2 3; do\n  echo \"$i\"\ndone\n"
BAD_SH = "#!/bin/bash\nif [ -f x ]; then\n  echo (\n"
GOOD_JS = ("// sum an array\nfunction sum(xs) {\n  return xs.reduce((a, b) => a + b, 0);\n}\n"
           "console.log(sum([1, 2, 3]));\n")
LONG = "# " + " ".join(f"w{i}" for i in range(60)) + "\n"


def fenced(code: str, tag: str) -> str:
    return f"Here is the file:\n```{tag}\n{code}```\n"


def documents() -> list[CodeRecord]:
    """Phase-2 records with annotator scores (seeds: the top ones per language)."""
    py = [f"import os  # module {i}\ndef helper_{i}(path):\n"
          f"    # seed document {i}\n    return os.path.join(path, 'x{i}')\n"
          for i in range(11)]
    docs = [CodeRecord(f"py-{i}", t, "python", meta={"annotator": {"score": 0.9 - 0.01 * i}}) for i, t in enumerate(py)]
    docs.append(CodeRecord("py-low", "x = 1\n", "python", meta={"annotator": {"score": 0.01}}))  # not a seed
    docs.append(CodeRecord("py-unscored", "y = 2\n", "python"))  # never a seed
    docs += [CodeRecord(f"sh-{i}", f"#!/bin/bash\n# seed {i}\necho seed-{i}\nls /tmp/{i}\n", "shell",
                        meta={"annotator": {"score": 0.8 - 0.1 * i}}) for i in range(2)]
    docs.append(CodeRecord("js-0", "// seed js\nconst x0 = [1, 2];\nconsole.log(x0.length);\n", "javascript",
                           meta={"annotator": {"score": 0.7}}))
    return docs


PER_LANGUAGE = 11  # seeds_per_language: every scored python document but the low one


def write_phase2(out: Path) -> Path:
    records.write_shard(out / records.shard_name(0), documents()[:8])
    records.write_shard(out / records.shard_name(1), documents()[8:])
    records.write_manifest(out, [records.shard_entry(p) for p in records.list_shards(out)], kind="test-phase2")
    return out


def contaminated_code() -> str:
    """A file whose comment is an MBPP task statement word for word (the decontaminator drops it)."""
    item = next(i for i in read_benchmark(benchmark_path(None, "mbpp")) if str(i["task_id"]) == "86")
    return f"# {item['text']}\ndef centered(n):\n    return 3 * n * (n - 1) + 1\n"


def chat_answers(phase2: Path) -> dict[str, tuple[str, str | None]]:
    """seed id -> (answer, the funnel reason it must get; None = kept)."""
    doc = {d.id: d.content for d in documents()}
    return {
        "py-0": (fenced(GOOD_A, "python"), None),
        "py-1": (fenced(GOOD_B, "python"), None),
        "py-2": (fenced(GOOD_A, "python"), "duplicate"),
        "py-3": (fenced(NEAR_A, "py"), "near_duplicate"),
        "py-4": (fenced(BAD_PY, "python"), "syntax_error"),
        "py-5": (fenced(contaminated_code(), "python"), "contaminated"),
        "py-6": (fenced(GOOD_JS, "javascript"), "wrong_language"),
        "py-7": ("I cannot write that file.", "no_code"),
        "py-8": (fenced(LONG, "python"), "truncated"),
        "py-9": (fenced(doc["py-9"], "python"), "duplicate_of_seed"),
        "py-10": (fenced(doc["py-10"] + "print(helper_10('.'))\n", "python"), "near_duplicate_of_seed"),
        "sh-0": (fenced(GOOD_SH, "bash"), None),
        "sh-1": (fenced(BAD_SH, "sh"), "syntax_error"),
        "js-0": (fenced(GOOD_JS, "javascript"), None),
    }


def completion_answers() -> dict[str, str]:
    """Completions API (shell seeds only): the code up to the closing fence."""
    return {"sh-0": GOOD_SH + "```\n", "sh-1": "echo one\necho two\n```\n"}


MAX_TOKENS = 140  # LONG's answer is longer than this (truncated), every other answer shorter


def training_pairs(phase2: Path, template_path: Path) -> list:
    """(prompt, answer) pairs the tiny model memorizes: chat prompts of every seed, completion prompts of shell."""
    tpl = load_template(str(template_path))
    seeds, _ = select_seeds(phase2, PER_LANGUAGE)
    answers = chat_answers(phase2)
    comp = completion_answers()
    pairs = []
    for s in seeds:
        pairs.append((tpl.chat(s.language, s.snippet), answers[s.id][0]))
        if s.id in comp:
            pairs.append((tpl.completion(s.language, s.snippet), comp[s.id]))
    return pairs
