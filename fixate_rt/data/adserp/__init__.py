"""AdSERP (Latifzadeh et al., SIGIR'25) → fixate-rt formats: see importer.import_adserp and docs/adserp.md."""

from .importer import import_adserp

__all__ = ["import_adserp"]
