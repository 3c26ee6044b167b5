"""Phase 1 data: raw code -> clean, deduplicated, decontaminated, redacted, grouped documents.

Stages (each one module): ingest -> filters -> exact_dedup -> near_dedup ->
decontaminate -> pii -> grouping, chained by ``pipeline.run_phase1``.
"""
