"""The pytest plugin: thin hooks over one session record (hooks.py is the entry point)."""
