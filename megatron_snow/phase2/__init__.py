"""Phase 2 of the recipe: quality annotator, corpus scoring, top-document selection, alignment."""
