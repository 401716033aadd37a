"""Triton kernels, shipped as ``fixate_rt.kernels``.

rollout.py: the fused attention-rollout row from Q/K (no T×T attention). `triton_status` reports whether Triton
can be used at all, so the ops registry can say why a ``triton`` implementation is unavailable.
"""

from __future__ import annotations


def triton_status() -> str:
    """"" when Triton imports, else the reason (install with ``pip install 'fixate-rt[gpu]'``)."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"triton not installed ({exc}); pip install 'fixate-rt[gpu]'"
    return ""
