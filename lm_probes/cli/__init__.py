"""The lm-probes command: one module per subcommand, imported when it runs."""
