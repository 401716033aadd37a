"""Whether Triton can be used at all, so the ops registry can say why a ``triton`` implementation is unavailable.

This folder ships as ``fixate_rt.kernels``, a namespace package on purpose: it has no ``__init__.py``, so when
Python runs from the repository root a bare ``import kernels`` still finds the Hugging Face ``kernels`` package
(which transformers imports where it is installed) instead of this folder.
"""

from __future__ import annotations


def triton_status() -> str:
    """"" when Triton imports, else the reason (install with ``pip install 'fixate-rt[gpu]'``)."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"triton not installed ({exc}); pip install 'fixate-rt[gpu]'"
    return ""
