"""Moved to ``megatron_snow.languages`` (one language table for every phase); kept as an import path."""
from megatron_snow.languages import (  # noqa: F401
    ALIASES, EXTENSIONS, RECIPE_LANGUAGES, NotebookError, canonical_language, language_from_path,
    normalize_language, notebook_to_script,
)
