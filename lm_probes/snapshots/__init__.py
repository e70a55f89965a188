"""Stage 4, the snapshot: what the probes observed, recorded per card and machine class, and
compared section by section (sections.py is the list of sections)."""
