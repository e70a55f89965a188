"""Stage 5, the report: the HTML summary of a pytest run, its figures, and the diff page."""
