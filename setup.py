"""The optional C part of the ingest (ingest/_scan.c); everything else is in pyproject.toml.

``optional=True``: without a C compiler the build goes on and the ingest uses the pure-Python
fast path, which decides and stores every frame alike (ingest/canonical.py), only slower.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ingest._scan", ["ingest/_scan.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=vla"])])
