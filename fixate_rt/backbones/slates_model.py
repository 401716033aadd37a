"""The built-in pretrained ``slates-qwen3vl``: a small Qwen3-VL that reads the project's rendered slates.

Unlike the random ``tiny-*`` models it was trained (``scripts/pretrain_slates_model.py``, model card in its
folder) on the grounding tasks of `fixate_rt.data.grounding`: find the poster of a genre, a title or a grid
position, and pick what a profile's top genre names. Its weights ship inside the package
(``fixate_rt/models/slates-qwen3vl/``) and load through ``from_pretrained`` like any local checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from ..data.grounding import WORDS

NAME = "slates-qwen3vl"
FOLDER = Path(__file__).resolve().parents[1] / "models" / NAME
# The same tasks without the position task, 10 decoder layers, the answer row's attention supervised in layers 2-3
# only: the probes (the last 6 layers, 4-9) read no supervised layer (its model card; docs/backbones.md).
FAIR_NAME = "slates-qwen3vl-fair-deep"
FOLDERS = {NAME: FOLDER, FAIR_NAME: FOLDER.parent / FAIR_NAME}

# (family, text overrides, vision overrides, max pixels): `tiny.build_config`'s shape tuple.
SHAPE = ("qwen3_vl",
         dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, head_dim=32, mrope_section=[4, 6, 6]),
         dict(depth=2, hidden_size=96, intermediate_size=192, num_heads=2, out_hidden_size=128,
              num_position_embeddings=256, deepstack_visual_indexes=[0, 1], patch_size=16),
         512 * 512)
EXTRA_WORDS = WORDS


def pretrained_folder(name: str) -> Path | None:
    """The shipped folder of a built-in pretrained model, or None if ``name`` is not one."""
    return FOLDERS.get(name)
