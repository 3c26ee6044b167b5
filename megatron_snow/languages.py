"""The one language table: the recipe's 18 languages, one label each, everywhere.

Labels are the keys of ``EXTENSIONS`` (``cpp``, ``csharp``, ``jupyter``, ...).
Every other spelling met in datasets or configs (``C++``, ``c#``,
``Jupyter Notebook``, ``c-sharp``) goes through ``normalize_language`` to one of
them, so phase 1, phase 2 and the blends agree on a language's name.
Detection from a path (extension, or a shebang line) and the notebook-to-script
conversion live here too.
"""
from __future__ import annotations

import json
import os

# Canonical language name -> file extensions (lower case, with the dot).
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "python": (".py",),
    "java": (".java",),
    "cpp": (".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".tcc"),
    "c": (".c", ".h"),
    "javascript": (".js", ".mjs", ".cjs", ".jsx"),
    "php": (".php",),
    "csharp": (".cs",),
    "go": (".go",),
    "typescript": (".ts", ".tsx", ".mts", ".cts"),
    "sql": (".sql",),
    "ruby": (".rb",),
    "rust": (".rs",),
    "jupyter": (".ipynb",),
    "scala": (".scala", ".sc"),
    "kotlin": (".kt", ".kts"),
    "shell": (".sh", ".bash", ".zsh", ".ksh"),
    "dart": (".dart",),
    "swift": (".swift",),
}
RECIPE_LANGUAGES: tuple[str, ...] = tuple(EXTENSIONS)

_BY_EXT = {ext: lang for lang, exts in EXTENSIONS.items() for ext in exts}

# Names used by The Stack (v1 `lang` column / data directories) and common spellings.
ALIASES = {
    "c++": "cpp", "c-sharp": "csharp", "c#": "csharp", "jupyter notebook": "jupyter",
    "jupyter-notebook": "jupyter", "ipython notebook": "jupyter", "bash": "shell", "sh": "shell",
    "js": "javascript", "ts": "typescript", "py": "python", "golang": "go",
}

# Interpreters named on a shebang line of an extensionless script.
_SHEBANG = {"sh": "shell", "bash": "shell", "zsh": "shell", "ksh": "shell", "dash": "shell",
            "python": "python", "python3": "python", "python2": "python", "ruby": "ruby",
            "node": "javascript", "php": "php"}


def normalize_language(name: object) -> str | None:
    """A Stack-style language name -> canonical label (None if not one of ours, or not a string)."""
    if not isinstance(name, str) or not name:
        return None
    n = name.strip().lower()
    n = ALIASES.get(n, n)
    return n if n in EXTENSIONS else None


def canonical_language(name: object) -> str:
    """``normalize_language`` or, for a name that is not one of ours, the name lower-cased ('' if none)."""
    return normalize_language(name) or (name.strip().lower() if isinstance(name, str) else "")


def language_from_path(path: str, head: str | bytes = "") -> str | None:
    """Language by extension; extensionless files by their shebang line."""
    ext = os.path.splitext(path)[1].lower()
    if ext:
        return _BY_EXT.get(ext)
    if isinstance(head, bytes):
        head = head[:200].decode("utf-8", "replace")
    if head.startswith("#!"):
        words = head[2:].split("\n", 1)[0].replace("/", " ").split()
        if words and words[-1] != "env" and words[0] == "usr" and "env" in words:
            words = words[words.index("env") + 1:]
        for w in words:
            if w in _SHEBANG:
                return _SHEBANG[w]
            if w.startswith("python"):
                return "python"
    return None


class NotebookError(ValueError):
    pass


def notebook_to_script(text: str) -> str:
    """Jupyter JSON -> script text: code cells verbatim, markdown/raw cells as ``#`` comments.

    Anything that is not a notebook (bad JSON, nesting too deep, cells of the
    wrong type) raises NotebookError, never another exception.
    """
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as e:
        raise NotebookError(f"not JSON: {e.msg}") from None
    except RecursionError:
        raise NotebookError("JSON nested too deep") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells", nb.get("worksheets")), list):
        raise NotebookError("no cells")
    cells = nb.get("cells")
    if cells is None:  # nbformat 3
        cells = [c for ws in nb["worksheets"] if isinstance(ws, dict) and isinstance(ws.get("cells"), list)
                 for c in ws["cells"]]
    parts = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        src = cell.get("source", cell.get("input", ""))
        src = "".join(s if isinstance(s, str) else str(s) for s in src) if isinstance(src, list) else str(src)
        if not src.strip():
            continue
        if cell.get("cell_type") == "code":
            parts.append(src.rstrip("\n"))
        else:
            parts.append("\n".join(("# " + line).rstrip() for line in src.rstrip("\n").split("\n")))
    return "\n\n".join(parts) + ("\n" if parts else "")
