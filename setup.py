"""The package list, read from the tree: everything else about the build is in pyproject.toml.

pyproject.toml's ``[tool.setuptools.packages.find]`` finds packages by walking folders, so it
cannot also name the two packages whose folders are elsewhere (``package-dir`` there maps
``lm_probes.fixtures`` to fixtures/ and ``lm_probes.suite`` to tests/behaviour/), and setuptools
refuses a find together with a list. A hand-written list is what left ``lm_probes.served`` out of
the wheel (issue 32); tests/install/test_wheel.py checks the wheel against the tree.
"""

from setuptools import find_packages, setup

# every folder of lm_probes/ that holds an __init__.py, then the two mapped in pyproject.toml
PACKAGES = find_packages(include=["lm_probes", "lm_probes.*"]) + ["lm_probes.fixtures", "lm_probes.suite"]

setup(packages=PACKAGES)
