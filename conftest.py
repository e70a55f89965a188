# All pytest wiring lives in the plugin; see probes/plugin.py.
pytest_plugins = ["probes.plugin"]
