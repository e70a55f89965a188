"""Stage 2, the subject: a card loaded into a tokenizer and model once per session, the
shared probe inputs, and the probe results computed once per subject."""
