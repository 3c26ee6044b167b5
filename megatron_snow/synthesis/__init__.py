"""Phase 3 data: synthetic code files (OSS-Instruct adapted to pretraining) and the phase-3 mix.

- ``seeds.py``: the top-scored phase-2 documents per language and a seeded 1-15 line snippet of each;
- ``prompts.py`` + ``prompts/*.txt``: the prompt templates (editable text, hashed into every record);
- ``client.py``: the async OpenAI-compatible client (bounded concurrency, retries, timeouts, progress);
- ``filters.py``: code extraction, language and parse checks;
- ``generate.py``: the ``synthesize`` step (resumable, 1 or N MPI ranks, funnel by reason);
- ``mixing.py``: the ``mix`` step (phase-3 blend: Python ~50% of tokens, a token budget).
"""
