"""Prompt templates for phase-3 synthesis, kept as editable text files in ``prompts/``.

A template file has a ``### system`` and a ``### user`` section (chat API) and a
``### completion`` section (completions API: it ends by opening the code fence,
and the answer is the code up to the closing fence). Placeholders are
``$language``, ``$fence`` and ``$snippet`` (``string.Template``: braces in code
need no escaping). Every record carries the hash of the template's text, so a
changed prompt is visible in the data.
"""
from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).with_name("prompts")
SECTIONS = ("system", "user", "completion")

# canonical language label -> (display name, code-fence tag)
LANGUAGE_NAMES: dict[str, tuple[str, str]] = {
    "python": ("Python", "python"), "java": ("Java", "java"), "cpp": ("C++", "cpp"), "c": ("C", "c"),
    "javascript": ("JavaScript", "javascript"), "php": ("PHP", "php"), "csharp": ("C#", "csharp"),
    "go": ("Go", "go"), "typescript": ("TypeScript", "typescript"), "sql": ("SQL", "sql"),
    "ruby": ("Ruby", "ruby"), "rust": ("Rust", "rust"), "jupyter": ("Python", "python"),
    "scala": ("Scala", "scala"), "kotlin": ("Kotlin", "kotlin"), "shell": ("Bash", "bash"),
    "dart": ("Dart", "dart"), "swift": ("Swift", "swift"),
}


def language_name(language: str) -> tuple[str, str]:
    """(display name, fence tag) of a language label; unknown labels are used as they are."""
    return LANGUAGE_NAMES.get(language, (language, language))


@dataclass
class PromptTemplate:
    name: str
    text: str
    sections: dict[str, str]

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    def _fill(self, section: str, language: str, snippet: str) -> str:
        if section not in self.sections:
            raise ValueError(f"prompt template {self.name!r} has no '### {section}' section")
        name, fence = language_name(language)
        return string.Template(self.sections[section]).safe_substitute(language=name, fence=fence, snippet=snippet)

    def chat(self, language: str, snippet: str) -> list[dict[str, str]]:
        messages = []
        if self.sections.get("system", "").strip():
            messages.append({"role": "system", "content": self._fill("system", language, snippet)})
        messages.append({"role": "user", "content": self._fill("user", language, snippet)})
        return messages

    def completion(self, language: str, snippet: str) -> str:
        return self._fill("completion", language, snippet) + "\n"


def parse_template(name: str, text: str) -> PromptTemplate:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("### ") and line[4:].strip() in SECTIONS:
            current = line[4:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"prompt template {name!r}: text before the first '### section' line: {line[:60]!r}")
    if "user" not in sections and "completion" not in sections:
        raise ValueError(f"prompt template {name!r} needs a '### user' or a '### completion' section")
    return PromptTemplate(name, text, {k: "\n".join(v).strip("\n") for k, v in sections.items()})


def load_template(name_or_path: str) -> PromptTemplate:
    """A template by name (``prompts/<name>.txt``) or by path to a file of the same format."""
    p = Path(name_or_path)
    if not p.is_file():
        p = PROMPTS_DIR / f"{name_or_path}.txt"
    if not p.is_file():
        known = ", ".join(sorted(x.stem for x in PROMPTS_DIR.glob("*.txt")))
        raise ValueError(f"prompt template {name_or_path!r} not found (a file, or one of: {known})")
    return parse_template(p.stem, p.read_text(encoding="utf-8"))
