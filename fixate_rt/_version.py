"""The package version, in a module of its own so that code below the package (`versions`, `outputs`) reads it
without importing ``fixate_rt/__init__``. Keep equal to ``version`` in pyproject.toml (tests/test_docs_cli.py)."""

__version__ = "0.1.0"
