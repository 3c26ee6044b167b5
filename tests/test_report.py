"""report.md and report.html of a run directory: a phase-1 run through the real steps over a small generated
corpus with planted cases (every filter rule, exact and near duplicates, a pasted benchmark solution, PII,
and corpus text that holds ``<script>`` and ``</html>``), then the report, read as text and in headless
Chromium; and the tiny example's report.html in Chromium when CI has run the tiny example."""
from __future__ import annotations

import gzip
import json
import os
import random
import re
from pathlib import Path

import pytest
import yaml

from megatron_snow.benchmarks import SHIPPED_DIR
from megatron_snow.config import load_config
from megatron_snow.dist import Comm
from megatron_snow.phase1.pipeline import Phase1Config, run_phase1
from megatron_snow.report import MAX_HTML_BYTES, build_report
from megatron_snow.report.sections import build_sections
from tests.report_browser import Browser, find_chromium

WORDS = ("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega river stone cloud field light "
         "signal vector matrix buffer stream packet socket thread queue parser token lexer cache index table "
         "record header footer layout border margin window canvas sprite shader vertex pixel color shadow "
         "engine motor wheel brake gear clutch pedal filter valve pump nozzle sensor timer clock alarm").split()
PLANTED_SCRIPT = '<script>alert("corpus")</script></html>'
PLANTED_NAME = "<img src=x onerror=alert(3)>.py"


def _code(seed: int, n_funcs: int = 12) -> str:
    rng = random.Random(seed)
    out = [f'"""{" ".join(rng.choice(WORDS) for _ in range(8))}."""', "import math", ""]
    for _ in range(n_funcs):
        a, b, c = rng.sample(WORDS, 3)
        out += [f"def {a}_{b}_{rng.randint(0, 999)}({a}, {b}):",
                f'    """{" ".join(rng.choice(WORDS) for _ in range(10))}."""',
                f"    {c} = {a} * {rng.randint(2, 99)} + {b}",
                f"    if {c} > {rng.randint(100, 999)}:",
                f"        return math.sqrt({c}) + {rng.choice(WORDS)}_offset",
                f"    return {c} - {rng.randint(1, 50)}", ""]
    return "\n".join(out)


def _edit(text: str, seed: int, n: int) -> str:
    """``text`` with ``n`` words changed (a near duplicate)."""
    rng = random.Random(seed)
    words = text.split(" ")
    for i in rng.sample(range(len(words)), n):
        words[i] = rng.choice(WORDS)
    return " ".join(words)


def make_corpus(root: Path) -> dict[str, tuple[str, str]]:
    """Repositories under ``root``; returns {repo/path: (stage, reason)} of the planted cases."""
    with gzip.open(SHIPPED_DIR / "humaneval.jsonl.gz", "rt", encoding="utf-8") as f:
        he0 = json.loads(f.readline())
    files = {f"app/mod_{i}.py": _code(i) for i in range(8)}
    files["lib/engine.c"] = "\n".join(f"int f{i}(int x) {{ return x * {i} + {i % 7}; }}" for i in range(40)) + "\n"
    near = _code(100, 20)
    files["lib/near_a.py"] = near
    files["vendor/near_b.py"] = _edit(near, 1, 6)
    files["lib/dup.py"] = _code(200)
    files["vendor/dup.py"] = _code(200)
    files["lib/long_line.py"] = f"# {PLANTED_SCRIPT}\nX = '{'ab ' * 600}'\n" + _code(300, 3)  # a 1806-character line
    files["lib/symbols.py"] = "\n".join("{}[]()<>=+-*/;:,.!?" * 3 for _ in range(30)) + "\n"
    files[f"lib/{PLANTED_NAME}"] = ""
    files["lib/solver.py"] = _code(400, 4) + "\n\n" + he0["prompt"] + he0["canonical_solution"] + "\n"
    files["lib/settings.py"] = (f'"""Settings. {PLANTED_SCRIPT} Maintainer: Jane Roe <jane.roe@example.org>."""\n'
                                'DB_HOST = "34.201.77.12"\n'
                                'GITHUB_TOKEN = "ghp_Zt9x2Lq8Vb4Nw6Hj1Kc3Mf5Rd7Sp0Ga2Ye4U"\n' + _code(500, 3))
    files["app/README.md"] = "# readme\n"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return {"lib/long_line.py": ("filter", "max_line_length"), "lib/symbols.py": ("filter", "alphanum_fraction"),
            f"lib/{PLANTED_NAME}": ("filter", "empty"), "vendor/dup.py": ("exact_dedup", "exact_duplicate"),
            "vendor/near_b.py": ("near_dedup", "near_duplicate"), "lib/solver.py": ("decontaminate", ""),
            "app/README.md": ("ingest", "unsupported_language")}


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """(run directory, planted cases, report.md): a phase-1 run through the real steps, then the report."""
    d = tmp_path_factory.mktemp("report_run")
    planted = make_corpus(d / "repos")
    cfg_path = d / "phase1.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "output_dir": str(d / "work" / "phase1"), "progress": False,
        "ingest": {"sources": [{"kind": "directory", "path": str(d / "repos"), "name": "local", "files_per_shard": 6}]},
        "decontaminate": {"benchmarks_dir": str(SHIPPED_DIR), "benchmarks": ["humaneval"]},
        "grouping": {"num_shards": 2, "seed": 1234}}))
    run_phase1(load_config(Phase1Config, cfg_path), comm=Comm(None))
    report = build_report(d / "work")
    return d / "work", planted, report


def _examples(sections) -> dict[str, list]:
    """Examples blocks by heading prefix "stage: reason"."""
    from megatron_snow.report.blocks import Examples

    return {b.heading.split(" (")[0]: b for s in sections for b in s.blocks if isinstance(b, Examples)}


def test_every_planted_drop_shown_with_its_evidence(planted_run):
    run, planted, _ = planted_run
    sections = build_sections(run)
    assert [s.id for s in sections] == ["funnel", "dropped"]
    funnel = sections[0].blocks[1]
    assert [r[0] for r in funnel.rows] == ["ingest", "filter", "exact_dedup", "near_dedup", "decontaminate", "pii",
                                           "group"]
    assert "unsupported_language 1 (unknown 1)" in funnel.rows[0][4]
    kept_per_language = sections[0].blocks[3]
    assert kept_per_language.columns == ["step", "c", "python"]  # no column of zeros for "unknown"
    ex = _examples(sections)
    for rel, (stage, reason) in planted.items():
        heads = [h for h in ex if h.startswith(f"{stage}: {reason}")]
        assert heads, f"{rel}: no examples for {stage} {reason} (have {sorted(ex)})"
        assert any(e.title == rel for h in heads for e in ex[h].items), (rel, heads)
    ev = {e.title: dict(e.evidence) for b in ex.values() for e in b.items}
    assert ev["lib/long_line.py"]["value"] == "longest line, characters: 1806"
    assert ev["lib/long_line.py"]["setting"].startswith("max_line_length = 1000")
    assert ev["lib/symbols.py"]["value"].startswith("alphanumeric fraction: 0.0")
    assert ev["vendor/dup.py"]["kept partner"] == "local/lib/dup.py"
    near = ex["near_dedup: near_duplicate"].items[0]
    assert near.side[0] == "kept partner: lib/near_a.py" and near.side[1].startswith(_code(100, 20)[:40])
    j = float(dict(near.evidence)["Jaccard with the kept partner"].split()[0])
    assert 0.7 <= j < 1.0
    solver = ev["lib/solver.py"]
    assert solver["benchmark"].startswith("humaneval") and solver["item"] == "HumanEval/0"
    assert "has_close_elements" in solver["matched text"] or "numbers" in solver["matched text"]
    shown = next(e for h, b in ex.items() if h.startswith("decontaminate:") for e in b.items
                 if e.title == "lib/solver.py")
    assert shown.text_label.startswith("from line") and "def has_close_elements" in shown.text
    pii = {e.title: e for h, b in ex.items() if h.startswith("pii:") for e in b.items}
    settings = pii["lib/settings.py"]
    assert "email 1" in dict(settings.evidence)["redacted"] and "<EMAIL>" in settings.text
    assert "jane.roe@example.org" not in settings.text and "34.201.77.12" not in settings.text


def test_html_self_contained_escaped_and_same_sections_as_markdown(planted_run):
    run, _, md_path = planted_run
    page = md_path.with_suffix(".html")
    html = page.read_text(encoding="utf-8")
    md = md_path.read_text()
    assert page.stat().st_size < MAX_HTML_BYTES
    # one script (ours), one closing </html>: the planted ones are text
    assert html.count("<script") == 1 and html.count("</html>") == 1 and "<img src=x" not in html
    assert html.count("&lt;script&gt;alert(&quot;corpus&quot;)&lt;/script&gt;&lt;/html&gt;") >= 2  # filter, PII
    assert "&lt;img src=x onerror=alert(3)&gt;.py" in html
    # nothing to fetch: every image inline, no URL to another file or host
    assert not re.search(r'(?:src|href)="(?!data:image/png;base64,|#)', html)
    assert not re.search(r"url\(|@import|https?://", html.split("<main>")[0])
    # both renderers drew the same sections (one set of builders)
    titles_md = re.findall(r"^## (.+)$", md, flags=re.M)
    titles_html = re.findall(r'<section id="[^"]+" class="report-section"><h2>([^<]+)</h2>', html)
    assert titles_md == titles_html == [s.title for s in build_sections(run)]
    assert (md_path.parent / "funnel.png").is_file() and "![documents kept per step and language](funnel.png)" in md


def test_report_size_capped_whatever_the_run(tmp_path):
    """A step (on the real runner) that sets 3,000 documents aside under 1,000 reasons, each document lines of
    '<' (escaping makes each character four): examples are cut to their first lines and their text is capped
    in all, so report.html stays under 10 MB."""
    from megatron_snow.records import CodeRecord, shard_name, write_manifest, write_shard
    from megatron_snow.stages import RecordStep, run_step

    class DropAll(RecordStep):
        name = "filter"

        def __init__(self, input_dir: Path):
            self.input_dir, self.settings = input_dir, {}

        def map(self, rec):
            return None, f"rule_{int(rec.id) % 1000:04d}", {"value": "<" * 500}

    inp = tmp_path / "in"
    line = "<" * 200 + "\n"
    entries = [write_shard(inp / shard_name(k), [CodeRecord(id=str(k * 1000 + i), content=line * 30, language="python")
                                                  for i in range(1000)]) for k in range(3)]
    write_manifest(inp, entries)
    run_step(DropAll(inp), tmp_path / "run" / "02_filter", Comm(None), progress=False)
    md = build_report(tmp_path / "run")
    page = md.with_suffix(".html")
    assert 1_000_000 < page.stat().st_size < MAX_HTML_BYTES
    html = page.read_text()
    assert html.count("rule_0999") >= 1 and html.count('<details class="example"') < 3000  # capped, not all


def test_roc_points_area_is_the_roc_auc():
    from megatron_snow.phase2.metrics import roc_auc, roc_points

    rng = random.Random(0)
    pos = [rng.random() + 0.3 for _ in range(40)]
    neg = [round(rng.random(), 1) for _ in range(60)]  # ties
    c = roc_points(pos, neg, max_points=1000)
    area = sum((c["fpr"][i + 1] - c["fpr"][i]) * (c["tpr"][i + 1] + c["tpr"][i]) / 2 for i in range(len(c["fpr"]) - 1))
    assert c["fpr"][0] == c["tpr"][0] == 0 and c["fpr"][-1] == c["tpr"][-1] == 1
    assert area == pytest.approx(roc_auc([1] * 40 + [0] * 60, pos + neg), abs=1e-3)
    assert len(roc_points(pos, neg, max_points=11)["fpr"]) <= 11


# -- in a real browser ------------------------------------------------------------------
def _chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: no chromium (bash scripts/chromium_local.sh install)")
        pytest.skip("no chromium here (bash scripts/chromium_local.sh install, as root)")
    return path


def _check_in_browser(page: Path, tmp_path: Path, shot: str) -> dict:
    """Open ``page`` from disk: every section drawn, no request but the file and its inline images, no error."""
    browser = Browser(_chromium(), tmp_path / "profile")
    try:
        session = browser.open(page.resolve().as_uri())
        state = browser.evaluate(session, """JSON.stringify({
            sections: Array.from(document.querySelectorAll('section.report-section')).map(s => ({
                id: s.id, height: s.getBoundingClientRect().height, blocks: s.children.length})),
            images: Array.from(document.images).map(i => i.complete && i.naturalWidth > 0),
            scripts: document.scripts.length,
            text: document.body.innerText})""")
        # the page's one script: its button opens every example, or closes every one, and says which it will do
        toggled = browser.evaluate(session, """(() => {
            const b = document.getElementById('toggle-examples');
            const all = [...document.querySelectorAll('details.example')];
            const states = [];
            for (const _ of [1, 2]) { const said = b.textContent; b.click();
                states.push([said, all.every(d => d.open), all.every(d => !d.open)]); }
            return states; })()""")
        browser.screenshot(session, tmp_path / shot)
        requests, errors = browser.requests(), browser.errors()
    finally:
        browser.close()
    state = json.loads(state)
    outside = [u for u in requests if u != page.resolve().as_uri() and not u.startswith("data:image/png;base64,")]
    assert not outside, f"requests left the file: {outside[:5]}"
    assert not errors, errors
    assert all(state["images"]) and state["scripts"] == 1
    assert all(s["height"] > 50 and s["blocks"] > 1 for s in state["sections"]), state["sections"]
    for said, _, all_closed_after in toggled:
        assert said.startswith("collapse") == all_closed_after
    assert toggled[0][1] != toggled[0][2] and toggled[0][1:] == toggled[1][:0:-1]  # all one way, then the other
    assert (tmp_path / shot).stat().st_size > 10_000
    return state


def test_planted_report_in_chromium(planted_run, tmp_path):
    run, _, md_path = planted_run
    state = _check_in_browser(md_path.with_suffix(".html"), tmp_path, "planted.png")
    assert [s["id"] for s in state["sections"]] == [s.id for s in build_sections(run)]
    assert PLANTED_SCRIPT in state["text"] and PLANTED_NAME in state["text"]  # shown as text


def test_tiny_example_report_in_chromium(tmp_path):
    """The README's tiny example (CI runs it first, into MEGATRON_SNOW_TINY_WORK): its report.html, every section."""
    work = os.environ.get("MEGATRON_SNOW_TINY_WORK")
    if not work:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: MEGATRON_SNOW_TINY_WORK is not set (.ci/run runs the tiny example first)")
        pytest.skip("the tiny example was not run here (MEGATRON_SNOW_TINY_WORK unset; .ci/run sets it)")
    work = Path(work) if Path(work).is_absolute() else Path(__file__).resolve().parents[1] / work
    page = work / "report.html"
    assert page.is_file(), f"{page}: examples/tiny/run.sh writes it (step 10, report)"
    size = page.stat().st_size
    assert size < MAX_HTML_BYTES
    state = _check_in_browser(page, tmp_path, "tiny.png")
    ids = [s["id"] for s in state["sections"]]
    assert ids[:2] == ["funnel", "dropped"] and {"annotator", "synthesis", "training", "evaluation"} <= set(ids), ids
    text = state["text"]
    for shown in ("selection cutoff", "the top, median and bottom scored documents", "Alignment with the benchmarks",
                  "seed snippet", "The phase-3 mix", "Python share 50.0%",
                  "Arctic-SnowCoder-1.3B (phase 3) (paper, Table 2)", "Table 2 (main results)"):
        assert shown in text, shown
    assert len(state["images"]) >= 5  # funnel, scores, alignment, mix, training
    print(f"tiny example report.html: {size:,} bytes; screenshot {tmp_path / 'tiny.png'}")
