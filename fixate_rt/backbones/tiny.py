"""Embedded random-weight backbones: the default ``tiny-qwen3vl`` and larger named shapes for benchmarks.

``tiny-qwen3vl``: the real Qwen3-VL class with a tiny config.

Seeded random weights, a WordLevel tokenizer built offline with the ``tokenizers`` library (Qwen special
tokens, letters A–Z as single tokens, a small word vocabulary) and the Qwen2-VL PIL image processor with
16-px patches. Written once to a cache folder and then loaded with ``from_pretrained`` like any checkpoint.
Its outputs are meaningless (random weights); it exists so every path runs for real on a CPU in seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from .. import template
from ..data.synth_vocab import GENRES, TITLE_WORDS

NAME = "tiny-qwen3vl"
VERSION = "v1"
# Named random configs: (text config overrides, vision config overrides, max pixels into the vision tower).
# ``mid-qwen3vl`` is a mid-size shape for CPU benchmarks; ``qwen3vl-4b-shape`` has Qwen3-VL-4B's decoder
# and vision shapes (GPU benchmarks; ~4.4 B random parameters, never downloaded).
SHAPES = {
    NAME: (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, mrope_section=[2, 3, 3]),
           dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                num_position_embeddings=256, deepstack_visual_indexes=[0, 1]), 512 * 512),
    "mid-qwen3vl": (dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=12, num_attention_heads=8,
                         num_key_value_heads=4, head_dim=64, mrope_section=[8, 12, 12]),
                    dict(depth=4, hidden_size=256, intermediate_size=512, num_heads=4, out_hidden_size=512,
                         num_position_embeddings=2304, deepstack_visual_indexes=[1, 2, 3]), 16384 * 32 * 32),
    "qwen3vl-4b-shape": (dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                              num_key_value_heads=8, head_dim=128, mrope_section=[24, 20, 20]),
                         dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2560,
                              num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17]), 16384 * 32 * 32),
}
SEED = 1234
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
UNK = "[UNK]"
# Whitespace is dropped except newlines; words, single digits and punctuation are tokens.
PRETOKENIZE = r"\n|[A-Za-z]+|[0-9]|[^\sA-Za-z0-9]"


def cache_root() -> Path:
    """``$FIXATE_RT_CACHE`` or ``~/.cache/fixate-rt``."""
    return Path(os.environ.get("FIXATE_RT_CACHE", Path.home() / ".cache" / "fixate-rt"))


def model_path(name: str = NAME) -> Path:
    return cache_root() / "models" / f"{name}-{VERSION}"


def _vocabulary() -> list[str]:
    text = " ".join([template.INSTRUCTION, template.QUESTION, template.render("", ()),
                     "User profile Top_genre Preferred_genres", *GENRES, *TITLE_WORDS])
    words = re.findall(PRETOKENIZE, text)
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    digits = [str(d) for d in range(10)]
    punct = list(".,:;!?'\"()[]{}-_/&+*=<>|#%@")
    seen: dict[str, None] = {}
    for tok in SPECIAL_TOKENS + [UNK] + letters + digits + punct + ["\n"] + words:
        seen.setdefault(tok, None)
    return list(seen)


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(_vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[ \t\r]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(PRETOKENIZE), behavior="isolated"),
    ])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=UNK, pad_token="<|endoftext|>", eos_token="<|im_end|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )


def build_config(tokenizer, name: str = NAME):
    from transformers import Qwen3VLConfig

    text, vision, _ = SHAPES[name]
    text = dict(text)
    mrope = text.pop("mrope_section")
    ids = tokenizer.convert_tokens_to_ids
    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope,
                             "mrope_interleaved": True},
            **text,
        ),
        vision_config=dict(patch_size=16, spatial_merge_size=2, temporal_patch_size=2, **vision),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def write_random_model(folder: Path, name: str = NAME) -> None:
    """Build a named random model with seeded weights and save it as an ordinary checkpoint folder."""
    from transformers import Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = build_tokenizer()
    config = build_config(tokenizer, name)
    torch.manual_seed(SEED)
    model = Qwen3VLForConditionalGeneration(config)
    with torch.no_grad():  # wider than the default init so the random model's choices are not all equal
        model.lm_head.weight.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # tiny: at most 512² pixels into the vision tower, so a 1100×619 slate becomes 672×352 -> 11×21 = 231 merged
    # tokens (the stock Qwen3-VL limit gives 19×34 = 646, as the larger shapes do). This keeps the CPU demo and
    # CI fast; geometry stays exact because token boxes come from the grid the processor actually produced.
    Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2,
                             size={"shortest_edge": 56 * 56, "longest_edge": SHAPES[name][2]}).save_pretrained(folder)


def ensure_model(name: str = NAME) -> Path:
    """Return a named random model's folder, writing it on first use (atomically: temp folder + rename)."""
    if name not in SHAPES:
        raise KeyError(name)
    final = model_path(name)
    if (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        write_random_model(tmp, name)
        try:
            tmp.rename(final)
        except OSError:  # another process won the race; its copy is identical
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
