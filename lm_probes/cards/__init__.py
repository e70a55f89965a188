"""Stage 1, the card: what a model card file may hold (schema, expect sections), the sources
its tokenizer and weights come from, how it is read and validated, and its reference page."""
