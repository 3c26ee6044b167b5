"""Fast checks of the synthesis parts that need no server: snippets, templates, extraction, parsing."""
from __future__ import annotations

import pytest

from megatron_snow.synthesis.client import SamplingConfig, classify_error, request_body
from megatron_snow.synthesis.filters import extract_code, parses
from megatron_snow.synthesis.prompts import load_template, parse_template
from megatron_snow.synthesis.seeds import snippet

DOC = "\n".join(f"line {i}" for i in range(40))


def test_snippet_is_seeded_and_bounded():
    starts = set()
    for k in range(50):
        start, text = snippet(DOC, f"0:doc-{k}")
        assert (start, text) == snippet(DOC, f"0:doc-{k}")  # the same key, the same snippet
        lines = text.split("\n")
        assert 1 <= len(lines) <= 15 and lines == DOC.split("\n")[start:start + len(lines)]
        starts.add(start)
    assert len(starts) > 10  # random positions
    assert snippet("a\nb", "k", 1, 15) in ((0, "a\nb"), (0, "a"), (1, "b"))
    assert snippet("\n\n\ncode\n\n", "k")[1].strip() == "code"  # never a blank-only snippet
    with pytest.raises(ValueError):
        snippet(DOC, "k", 5, 2)


def test_shipped_template_renders_both_apis():
    t = load_template("code_file")
    chat = t.chat("cpp", "int x = {1};")
    assert [m["role"] for m in chat] == ["system", "user"]
    assert "C++" in chat[1]["content"] and "```cpp\nint x = {1};\n```" in chat[1]["content"]
    assert "$" not in chat[1]["content"]
    comp = t.completion("python", "x = 1")
    assert comp.endswith("```python\n") and "x = 1" in comp
    assert len(t.hash) == 16 and t.hash != parse_template("other", t.text + " ").hash
    with pytest.raises(ValueError, match="not found"):
        load_template("nope")


def test_extract_code():
    assert extract_code("Sure:\n```python\nx = 1\n```\nDone.", "python") == ("x = 1\n", None)
    two = "```bash\npip install x\n```\n```python\nimport x\nprint(x)\n```"
    assert extract_code(two, "python") == ("import x\nprint(x)\n", None)  # the block in the seed's language
    assert extract_code("```\nfoo()\n```", "javascript") == ("foo()\n", None)  # untagged: accepted
    assert extract_code("```java\nclass A {}\n```", "python") == (None, "wrong_language")
    assert extract_code("no code here", "python") == (None, "no_code")
    assert extract_code("```python\nx = 1\n", "python") == ("x = 1\n", None)  # never closed
    assert extract_code("```py\nx = 1\n```", "jupyter") == ("x = 1\n", None)
    assert extract_code("x = 1\n```\ntrailing", "python", fence_opened=True) == ("x = 1\n", None)


def test_parsers():
    assert parses("def f():\n    return 1\n", "python") is True
    assert parses("def f(:\n", "python") is False
    assert parses("echo ok\n", "shell") is True and parses("if then (\n", "shell") is False
    assert parses("anything", "dart") in (None, True, False)  # a grammar may or may not be installed


def test_request_body_and_errors():
    greedy = request_body(SamplingConfig(), 5, "chat")
    assert greedy == {"max_tokens": 2048, "temperature": 0.0, "top_p": 1.0, "seed": 5}
    comp = request_body(SamplingConfig(temperature=0.5), 5, "completions")
    assert comp["stop"] == ["```"] and '"do_sample": true' in comp["extra_body"]["generation_config"]
    assert classify_error(TimeoutError()) == ("timeout", True)
    assert classify_error(RuntimeError("x")) == ("RuntimeError", False)


def test_prompt_too_long_is_told_apart():
    """The 400 answers of vLLM, SGLang and transformers serve to a prompt longer than the model's context are
    ``prompt_too_long`` (not retried); other 400s stay ``http_400``."""
    import httpx
    import openai

    def bad_request(body: dict) -> openai.BadRequestError:  # as the openai client makes it of the answer's body
        response = httpx.Response(400, request=httpx.Request("POST", "http://127.0.0.1/v1/completions"))
        message = body.get("message")
        return openai.BadRequestError("Error code: 400" + (f" - {message}" if message else ""), response=response,
                                      body=body)

    for body in ({"message": "This model's maximum context length is 2048 tokens. However, you requested 2100 "
                             "tokens (2036 in the messages, 64 in the completion).", "type": "BadRequestError"},  # vLLM
                 {"message": "The decoder prompt (length 5000) is longer than the maximum model length of 4096."},
                 {"message": "The input (5000 tokens) is longer than the model's context length (4096 tokens)."},
                 {"detail": "The prompt has 300 tokens, but the model takes at most 256, prompt and answer "
                            "(`--max-model-len`)."}):  # transformers serve 5.25: its reason only in the body
        assert classify_error(bad_request(body)) == ("prompt_too_long", False), body
    assert classify_error(bad_request({"detail": "prompt must be a string."})) == ("http_400", False)


def test_text_problem_and_snippet_max_chars():
    from megatron_snow.synthesis.filters import text_problem

    assert text_problem("x = 1\n") is None and text_problem("x\x00") == "binary"
    assert text_problem("\ud800") == "invalid_utf8"
    doc = "short line\n" + "y" * 500 + "\n" + "\n".join(f"line {i}" for i in range(30))
    for k in range(30):
        start, text = snippet(doc, f"k{k}", 1, 15, max_chars=100)
        assert 0 < len(text) <= 100 and text.strip()  # shortened to fit, never the 500-char line
    assert len(snippet("z" * 300, "k", max_chars=100)[1]) == 300  # no line fits: the caller checks first


def test_select_seeds_counts_every_document():
    from megatron_snow.records import CodeRecord
    from megatron_snow.synthesis.seeds import select_seeds

    def rec(i, content="x = 1\n", score=0.5, lang="python"):
        return CodeRecord(i, content, lang, meta={"annotator": {"score": score}} if score is not None else {})

    docs = [rec("a", score=0.9), rec("b", score=0.8), rec("a", score=0.7), rec("c", score=None),
            rec("d", score=float("nan")), rec("e", content=" \n"), rec("f", content="m" * 99), rec("g", lang="cobol"),
            rec("h", score=0.1), rec("s", lang="shell")]
    seeds, counts = select_seeds(lambda: iter(docs), 3, max_chars=50)
    assert [s.id for s in seeds] == ["a", "b", "s"] and [s.position for s in seeds] == [0, 1, 9]
    assert counts["python"] == {"documents": 8, "seeds": 2, "duplicate_id": 1, "unscored": 2, "empty": 1,
                                "snippet_too_long": 1, "not_a_seed": 1}
    assert counts["cobol"] == {"documents": 1, "seeds": 0, "unsupported_language": 1, "not_a_seed": 0}
    _, counts = select_seeds(lambda: iter(docs), 3, languages=["shell"])
    assert counts["python"]["language_not_requested"] == 8 and counts["shell"]["seeds"] == 1
