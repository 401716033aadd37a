"""Versions of everything that can change a result, recorded in every run.json and export manifest."""

from __future__ import annotations

import platform


def versions() -> dict[str, str | bool]:
    """Package versions of fixate-rt and its numerical stack, and whether the C++ module is built."""
    import numpy as np
    import pyarrow as pa
    import torch
    import transformers

    from . import ops
    from ._version import __version__

    return {"fixate_rt": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__, "pyarrow": pa.__version__,
            "cpp_module": ops.cpp_available()}
