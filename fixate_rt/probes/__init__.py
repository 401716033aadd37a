"""Probing: what the model attended to (capture), and how that becomes token relevance (reference)."""
