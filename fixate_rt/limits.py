"""Bounds on the work an input or option can ask for. Each is checked before the work starts, with one line naming
the file or option; docs/formats.md ("Limits") lists them and a test keeps that list equal to these constants.

Why bounds at all: every input may come from someone else. A 1.6 MB archive that unpacks to gigabytes, a manifest
declaring a hidden size of 10¹² or a billion bootstrap resamples would otherwise exhaust memory or run for hours
before anything could be reported.
"""

from __future__ import annotations

# Export folders
MAX_ARCHIVE_ENTRY_BYTES = 16 * 2**30  # one entry of a .pt2 archive (and one ONNX external-data file)
MAX_ARCHIVE_ENTRIES = 100_000  # entries in one .pt2 archive
MAX_HIDDEN_SIZE = 65_536  # a manifest's hidden_size
MAX_LAYERS = 1_024  # a manifest's num_layers
MAX_IMAGE_SIDE = 8_192  # pixels per side of a slate (export --image-size, a manifest's served sizes)

# Options
MAX_RESAMPLES = 1_000_000  # compare --resamples
MAX_WORKERS = 1_024  # simulate --engine ray --workers
RAY_CONNECT_TIMEOUT_S = 60.0  # simulate --engine ray --address: how long joining a cluster may take

LIMITS = {
    "MAX_ARCHIVE_ENTRY_BYTES": MAX_ARCHIVE_ENTRY_BYTES, "MAX_ARCHIVE_ENTRIES": MAX_ARCHIVE_ENTRIES,
    "MAX_HIDDEN_SIZE": MAX_HIDDEN_SIZE, "MAX_LAYERS": MAX_LAYERS, "MAX_IMAGE_SIDE": MAX_IMAGE_SIDE,
    "MAX_RESAMPLES": MAX_RESAMPLES, "MAX_WORKERS": MAX_WORKERS, "RAY_CONNECT_TIMEOUT_S": RAY_CONNECT_TIMEOUT_S,
}

