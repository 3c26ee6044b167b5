"""What is kept of a generated answer: the code file in it, in the right language, that parses.

- Extraction: the fenced code blocks of the answer; the longest one tagged
  with the seed's language, else the longest untagged (or unknown-tagged)
  one; an answer without a fence is code only when the prompt opened the
  fence itself (the completions template).
- Wrong language: every block is tagged with another of the recipe's languages.
- Parsing: Python (and Jupyter scripts) with ``ast``; shell with ``bash -n``;
  other languages with a tree-sitter grammar when its package is installed
  (``tree_sitter_<language>``); otherwise unchecked (reported, not dropped).
"""
from __future__ import annotations

import ast
import functools
import importlib
import re
import shutil
import subprocess
import warnings

from megatron_snow.languages import normalize_language

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.DOTALL | re.MULTILINE)
_OPEN_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*\n(.*)\Z", re.DOTALL | re.MULTILINE)

# language label -> (module, attribute) of a tree-sitter grammar package
TREE_SITTER = {
    "java": ("tree_sitter_java", "language"), "javascript": ("tree_sitter_javascript", "language"),
    "c": ("tree_sitter_c", "language"), "cpp": ("tree_sitter_cpp", "language"),
    "go": ("tree_sitter_go", "language"), "rust": ("tree_sitter_rust", "language"),
    "ruby": ("tree_sitter_ruby", "language"), "csharp": ("tree_sitter_c_sharp", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"), "php": ("tree_sitter_php", "language_php"),
    "scala": ("tree_sitter_scala", "language"), "kotlin": ("tree_sitter_kotlin", "language"),
    "swift": ("tree_sitter_swift", "language"), "dart": ("tree_sitter_dart", "language"),
    "sql": ("tree_sitter_sql", "language"),
}


def text_problem(text: str) -> str | None:
    """``binary`` (a NUL), ``invalid_utf8`` (lone surrogates: not encodable text), or None for text."""
    if "\x00" in text:
        return "binary"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid_utf8"
    return None


def _same_language(tag: str, language: str) -> bool | None:
    """True/False when ``tag`` names one of our languages; None for an empty or unknown tag."""
    lang = normalize_language(tag)
    if lang is None:
        return None
    if language == "jupyter":
        return lang in ("python", "jupyter")
    return lang == language


def extract_code(answer: str, language: str, fence_opened: bool = False) -> tuple[str | None, str | None]:
    """(code, None) or (None, reason) with reason ``no_code`` or ``wrong_language``."""
    text = answer
    if fence_opened:  # the prompt ended with an open fence: the answer is code up to a closing fence
        end = re.search(r"^[ \t]*```", text, re.MULTILINE)
        code = text[: end.start()] if end else text
        return (code.strip("\n") + "\n", None) if code.strip() else (None, "no_code")
    blocks = [(m.group(2), m.group(3)) for m in _FENCE.finditer(text)]
    if not blocks:
        m = _OPEN_FENCE.search(text)  # a fence never closed (the answer stopped inside it)
        if m:
            blocks = [(m.group(2), m.group(3))]
    if not blocks:
        return None, "no_code"
    verdicts = [(_same_language(tag, language), body) for tag, body in blocks if body.strip()]
    if not verdicts:
        return None, "no_code"
    for want in (True, None):
        bodies = [b for v, b in verdicts if v is want]
        if bodies:
            return max(bodies, key=len).strip("\n") + "\n", None
    return None, "wrong_language"


@functools.lru_cache(maxsize=None)
def _tree_sitter_parser(language: str):
    spec = TREE_SITTER.get(language)
    if spec is None:
        return None
    try:
        import tree_sitter

        grammar = getattr(importlib.import_module(spec[0]), spec[1])()
        return tree_sitter.Parser(tree_sitter.Language(grammar))
    except Exception:  # noqa: BLE001 - not installed (or an incompatible build): unchecked
        return None


def parser_name(language: str) -> str | None:
    """Which parser checks ``language`` here (None: unchecked)."""
    if language in ("python", "jupyter"):
        return "ast"
    if language == "shell" and shutil.which("bash"):
        return "bash -n"
    if _tree_sitter_parser(language) is not None:
        return "tree-sitter"
    return None


def parses(code: str, language: str) -> bool | None:
    """True/False when a parser for ``language`` is available here, None when unchecked."""
    if language in ("python", "jupyter"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escape sequences etc. are warnings, not errors
                ast.parse(code)
            return True
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return False
    if language == "shell" and shutil.which("bash"):
        r = subprocess.run(["bash", "-n"], input=code.encode(), capture_output=True, timeout=30)
        return r.returncode == 0
    parser = _tree_sitter_parser(language)
    if parser is not None:
        return not parser.parse(code.encode("utf-8")).root_node.has_error
    return None
