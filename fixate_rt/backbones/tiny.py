"""Embedded random-weight backbones: tiny defaults of every family and larger shapes for benchmarks.

Each is the real `transformers` class with a small config and seeded random weights, a WordLevel tokenizer
built offline with the ``tokenizers`` library (the Qwen and InternVL special tokens, letters A–Z as single
tokens, a small word vocabulary) and the family's image processor config. Written once to a cache folder,
then loaded with ``from_pretrained`` like any checkpoint. Outputs are meaningless (random weights); they exist
so every path runs for real on a CPU in seconds.

| name | family | decoder | vision | 1100×619 slate |
|---|---|---|---|---|
| tiny-qwen3vl (default) | Qwen3-VL | 8 layers, D=64 | 16-px patches, DeepStack, ≤ 512² px | 12×21 = 252 tokens |
| tiny-qwen2vl / tiny-qwen25vl | Qwen2-VL / Qwen2.5-VL | 8 layers, D=64 | 14-px patches, ≤ 512² px | 13×24 = 312 tokens |
| tiny-internvl | InternVL (Qwen3 LLM) | 8 layers, D=64 | 448-px tiles, 28-px patches | 2×1 tiles + thumbnail, 3×64 = 192 tokens |
| mid-qwen3vl | Qwen3-VL | 12 layers, D=512 | stock limits | 19×34 = 646 tokens |
| qwen3vl-4b-shape | Qwen3-VL | Qwen3-VL-4B shapes (36 layers, D=2560) | 24 blocks | 646 tokens |
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import torch

from .. import template
from ..data.slates import MAX_SLOTS, default_labels
from ..data.synth_vocab import GENRES, TITLE_WORDS
from ..io import cache_root

NAME = "tiny-qwen3vl"
VERSION = "v4"  # v4: the reference templates' words are in the vocabulary
SEED = 1234
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>", "<img>", "</img>", "<IMG_CONTEXT>"]
UNK = "[UNK]"
# Whitespace is dropped except newlines; words, single digits and punctuation are tokens.
PRETOKENIZE = r"\n|[A-Za-z]+|[0-9]|[^\sA-Za-z0-9]"
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16)
QWEN_PIXELS = 512 * 512
STOCK_PIXELS = 16384 * 32 * 32

# name -> (family, text overrides, vision overrides, max pixels into the Qwen vision tower)
SHAPES = {
    NAME: ("qwen3_vl", dict(TINY_TEXT, mrope_section=[2, 3, 3]),
           dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                num_position_embeddings=256, deepstack_visual_indexes=[0, 1], patch_size=16), QWEN_PIXELS),
    "tiny-qwen2vl": ("qwen2_vl", dict(TINY_TEXT, mrope_section=[2, 3, 3]),
                     dict(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2, patch_size=14), QWEN_PIXELS),
    "tiny-qwen25vl": ("qwen2_5_vl", dict(TINY_TEXT, mrope_section=[2, 3, 3]),
                      dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=14, window_size=112, fullatt_block_indexes=[1]), QWEN_PIXELS),
    "tiny-internvl": ("internvl", dict(TINY_TEXT),
                      # Real InternVL tiles are 448 px with 14-px patches (256 tokens a tile); 28-px patches keep the
                      # same tiling decisions at 64 tokens a tile.
                      dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           image_size=[448, 448], patch_size=[28, 28]), None),
    "mid-qwen3vl": ("qwen3_vl", dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=12,
                                     num_attention_heads=8, num_key_value_heads=4, head_dim=64, mrope_section=[8, 12, 12]),
                    dict(depth=4, hidden_size=256, intermediate_size=512, num_heads=4, out_hidden_size=512,
                         num_position_embeddings=2304, deepstack_visual_indexes=[1, 2, 3], patch_size=16), STOCK_PIXELS),
    "qwen3vl-4b-shape": ("qwen3_vl", dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                                          num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                                          mrope_section=[24, 20, 20]),
                         dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2560,
                              num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17], patch_size=16),
                         STOCK_PIXELS),
}



def model_path(name: str = NAME) -> Path:
    return cache_root() / "models" / f"{name}-{VERSION}"


def _vocabulary(extra_words: tuple[str, ...] = ()) -> list[str]:
    text = " ".join([template.INSTRUCTION, template.QUESTION, template.render("", ()),
                     "User profile Top_genre Preferred_genres", *GENRES, *TITLE_WORDS,
                     # appended last so the ids of every earlier word stay as they were
                     template.REFERENCE_RECGAZE_INSTRUCTION, template.REFERENCE_ADSERP_INSTRUCTION,
                     "Search query", *extra_words])
    words = re.findall(PRETOKENIZE, text)
    letters = list(default_labels(MAX_SLOTS))  # A–Z, a–z: every default answer label is one token
    digits = [str(d) for d in range(10)]
    punct = list(".,:;!?'\"()[]{}-_/&+*=<>|#%@")
    seen: dict[str, None] = {}
    for tok in SPECIAL_TOKENS + [UNK] + letters + digits + punct + ["\n"] + words:
        seen.setdefault(tok, None)
    return list(seen)


def build_tokenizer(extra_words: tuple[str, ...] = ()):
    """The WordLevel tokenizer; ``extra_words`` are appended after the tiny vocabulary (earlier ids unchanged)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(_vocabulary(extra_words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[ \t\r]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(PRETOKENIZE), behavior="isolated"),
    ])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=UNK, pad_token="<|endoftext|>", eos_token="<|im_end|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )


def _text_config(tokenizer, text: dict, family: str) -> dict:
    text = dict(text)
    section = text.pop("mrope_section", None)
    rope = {"rope_type": "default", "rope_theta": 10000.0}
    if family != "internvl":
        rope["mrope_section"] = section
    if family == "qwen3_vl":
        rope["mrope_interleaved"] = True
    if family in ("qwen2_vl", "qwen2_5_vl"):
        text.pop("head_dim", None)  # derived from hidden_size / heads there
    ids = tokenizer.convert_tokens_to_ids
    return dict(vocab_size=len(tokenizer), max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=ids("<|im_start|>"), eos_token_id=ids("<|im_end|>"), rope_parameters=rope, **text)


def build_config(tokenizer, name: str = NAME, shape: tuple | None = None):
    """The named shape's config (or ``shape``: a (family, text, vision, max pixels) tuple like `SHAPES`'s)."""
    import transformers

    family, text, vision, _ = shape or SHAPES[name]
    ids = tokenizer.convert_tokens_to_ids
    if family == "internvl":
        return transformers.InternVLConfig(
            vision_config=dict(**vision), text_config=dict(model_type="qwen3", **_text_config(tokenizer, text, family)),
            image_token_id=ids("<IMG_CONTEXT>"), downsample_ratio=0.5, vision_feature_layer=-1,
            vision_feature_select_strategy="default", tie_word_embeddings=False,
        )
    cls = {"qwen3_vl": transformers.Qwen3VLConfig, "qwen2_vl": transformers.Qwen2VLConfig,
           "qwen2_5_vl": transformers.Qwen2_5_VLConfig}[family]
    return cls(
        text_config=_text_config(tokenizer, text, family),
        vision_config=dict(spatial_merge_size=2, temporal_patch_size=2, **vision),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        bos_token_id=ids("<|im_start|>"), eos_token_id=ids("<|im_end|>"), tie_word_embeddings=False,
    )


def write_random_model(folder: Path, name: str = NAME) -> None:
    """Build a named random model with seeded weights and save it as an ordinary checkpoint folder."""
    import transformers

    family, _, vision, max_pixels = SHAPES[name]
    tokenizer = build_tokenizer()
    config = build_config(tokenizer, name)
    torch.manual_seed(SEED)
    model_cls = {"qwen3_vl": transformers.Qwen3VLForConditionalGeneration,
                 "qwen2_vl": transformers.Qwen2VLForConditionalGeneration,
                 "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
                 "internvl": transformers.InternVLForConditionalGeneration}[family]
    model = model_cls(config)
    with torch.no_grad():  # wider than the default init so the random model's choices are not all equal
        model.lm_head.weight.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if family == "internvl":
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

        tile = vision["image_size"][0]
        GotOcr2ImageProcessorPil(size={"height": tile, "width": tile}, crop_to_patches=True, max_patches=12,
                                 image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    else:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        # Tiny shapes cap the pixels into the vision tower (a 1100×619 slate becomes 12×21 = 252 merged tokens
        # with 16-px patches instead of the stock 19×34 = 646) to keep the CPU demo and CI fast. Geometry stays
        # exact because token boxes come from the grid the processor actually produced.
        Qwen2VLImageProcessorPil(patch_size=vision["patch_size"], merge_size=2, temporal_patch_size=2,
                                 size={"shortest_edge": 56 * 56, "longest_edge": max_pixels}).save_pretrained(folder)


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
