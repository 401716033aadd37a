"""Every family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL): geometry proved from pixels, positions with a soft
prompt, N = 0 equals the plain forward, offline round trip, simulate end to end, clear errors."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from fixate_rt.backbones import load
from fixate_rt.data.layout import LETTERS
from fixate_rt.errors import ValidationError

pytestmark = pytest.mark.slow  # left out of the quick subset: bash scripts/test.sh -m "not slow"

QWEN = ["tiny-qwen2vl", "tiny-qwen25vl", "tiny-qwen3vl"]
FAMILIES = QWEN + ["tiny-internvl"]


@pytest.fixture(scope="module")
def backbones():
    return {name: load(name, device="cpu") for name in FAMILIES}


def coordinate_image(w: int, h: int) -> Image.Image:
    """R encodes x, G encodes y (0..255 across the image)."""
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, np.zeros_like(x)], -1).round().astype(np.uint8))


def _decode_xy(rgb: np.ndarray, w: int, h: int) -> tuple[float, float]:
    """Mean original-image (x, y) of un-normalised [3, ...] pixels in [0, 1]."""
    return float(rgb[0].mean()) * (w - 1), float(rgb[1].mean()) * (h - 1)


def _assert_inside(xy, box, slack):
    x, y = xy
    x0, y0, x1, y1 = box
    assert x0 - slack <= x <= x1 + slack and y0 - slack <= y <= y1 + slack, f"{xy} not in {box}"


@pytest.mark.parametrize("name", QWEN)
def test_qwen_geometry_from_pixels(backbones, name):
    bb = backbones[name]
    proc = bb.processor.image_processor
    w, h = 1100, 619
    pixel_values, grid = bb.processor.preprocess_image(coordinate_image(w, h))
    boxes = bb.processor.token_boxes(grid, (w, h))
    p = proc.patch_size
    patches = pixel_values.numpy().reshape(-1, 3, 2, p, p)[:, :, 0]  # [n_patches, C, p, p]
    mean, std = np.array(proc.image_mean)[:, None, None], np.array(proc.image_std)[:, None, None]
    pixels = patches * std + mean  # undo the normalisation
    slack = 2 * w / 255  # quantisation of the coordinate encoding, plus resize smoothing
    assert len(boxes) * 4 == len(pixels)
    for k in range(len(boxes)):  # a merged token = 4 consecutive patches (2×2)
        block = pixels[4 * k: 4 * k + 4].transpose(1, 0, 2, 3).reshape(3, -1)
        _assert_inside(_decode_xy(block, w, h), boxes[k], slack)
    # Neighbouring tokens really differ: a transposed or shifted mapping would fail above.
    assert boxes[1][0] > boxes[0][0] and len({tuple(b) for b in boxes.tolist()}) == len(boxes)


@pytest.mark.parametrize("size, grid", [((448, 448), (1, 1)), ((1100, 619), (2, 1)), ((619, 1100), (1, 2)),
                                        ((1344, 896), (3, 2))])
def test_internvl_tile_geometry_from_pixels(backbones, size, grid):
    bb = backbones["tiny-internvl"]
    proc = bb.processor
    w, h = size
    cols, rows, thumb = proc.grid(size)
    assert (cols, rows) == grid and thumb == (cols * rows > 1)
    pixel_values = proc.preprocess_image(coordinate_image(w, h)).numpy()
    ip = proc.image_processor
    pixels = pixel_values * np.array(ip.image_std)[None, :, None, None] + np.array(ip.image_mean)[None, :, None, None]
    boxes = proc.token_boxes(size, include_thumbnail=True)
    # Which ViT patches each token merges, from the model's own pixel shuffle applied to patch indices.
    tile, patch = pixel_values.shape[-1], bb.model.config.vision_config.patch_size[0]
    G = tile // patch
    idx = torch.arange(G * G, dtype=torch.float32).reshape(1, G, G, 1)
    merged = bb.model.model.pixel_shuffle(idx, scale_factor=bb.model.config.downsample_ratio).reshape(-1, 4).long()
    per_tile = merged.shape[0]
    assert len(boxes) == per_tile * pixel_values.shape[0]
    slack = 2 * max(w, h) / 255
    for k in range(len(boxes)):
        t, j = divmod(k, per_tile)
        blocks = []
        for pidx in merged[j].tolist():
            pr, pc = divmod(pidx, G)
            blocks.append(pixels[t, :, pr * patch:(pr + 1) * patch, pc * patch:(pc + 1) * patch].reshape(3, -1))
        _assert_inside(_decode_xy(np.concatenate(blocks, 1), w, h), boxes[k], slack)
    # By default the thumbnail's tokens are excluded from pooling (empty boxes).
    default = proc.token_boxes(size)
    if thumb:
        assert (default[-per_tile:] == -1).all() and (default[:-per_tile] >= 0).all()


def _plain_logits(bb, image, profile):
    """The model's own path: input_ids + pixel values; positions computed by HF itself."""
    if bb.family == "internvl":
        pv = bb.processor.preprocess_image(image)
        n = pv.shape[0] * bb.processor.tokens_per_tile
        ids, types = bb.processor.encode(profile, LETTERS, n)
        kwargs = dict(pixel_values=pv)
    else:
        pv, grid = bb.processor.preprocess_image(image)
        ids, types = bb.processor.encode(profile, LETTERS, int(grid.prod()) // 4)
        kwargs = dict(pixel_values=pv, image_grid_thw=grid, mm_token_type_ids=torch.tensor([types]))
    with torch.no_grad():
        out = bb.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), **kwargs)
    return out.logits[0, -1], ids, types, kwargs


@pytest.mark.parametrize("name", FAMILIES)
def test_no_prompt_equals_plain_forward_and_prompt_shifts_positions(backbones, name, synth_dir):
    bb = backbones[name]
    image = Image.open(synth_dir / "slates" / "s002.png").convert("RGB")
    plain, ids, types, kwargs = _plain_logits(bb, image, "Top_genre: Crime")
    feats = bb.encode_slate(image)
    label_ids = bb.label_token_ids(LETTERS)
    with torch.no_grad():
        ours = bb.decode(bb.build_inputs(["Top_genre: Crime"], LETTERS, feats, 0), feats, None, label_ids).label_logits[0]
    torch.testing.assert_close(ours, plain[label_ids], atol=1e-5, rtol=1e-5)
    n = 6
    shifted = bb.build_inputs(["Top_genre: Crime"], LETTERS, feats, n).position_ids
    unshifted = bb.build_inputs(["Top_genre: Crime"], LETTERS, feats, 0).position_ids
    img = torch.tensor(types) == 1
    torch.testing.assert_close(shifted[..., n:][..., img], unshifted[..., img] + n)
    if bb.family != "internvl":  # M-RoPE keeps 2-D positions for the image block
        assert not torch.equal(shifted[1, 0, n:][img], shifted[2, 0, n:][img])


@pytest.mark.parametrize("name", FAMILIES)
def test_offline_round_trip_gives_identical_logits(backbones, name, tmp_path, synth_dir):
    bb = backbones[name]
    bb.model.save_pretrained(tmp_path)
    bb.processor.tokenizer.save_pretrained(tmp_path)
    bb.processor.image_processor.save_pretrained(tmp_path)
    again = load(tmp_path, device="cpu")
    image = Image.open(synth_dir / "slates" / "s001.png").convert("RGB")
    outs = []
    for model in (bb, again):
        feats = model.encode_slate(image)
        with torch.no_grad():
            outs.append(model.decode(model.build_inputs(["x"], LETTERS, feats, 0), feats, None,
                                     model.label_token_ids(LETTERS)).label_logits)
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


@pytest.mark.parametrize("name", ["tiny-qwen2vl", "tiny-qwen25vl", "tiny-internvl"])
def test_simulate_and_score_with_every_family(name, tmp_path, synth_dir):
    from typer.testing import CliRunner

    from fixate_rt.cli import app

    runner = CliRunner()
    sim = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                              str(synth_dir / "slates"), "--out", str(tmp_path / "sim"), "--model", name, "--device",
                              "cpu", "--probe", "attnlrp"])
    assert sim.exit_code == 0, sim.output + (sim.stderr or "")
    info = json.loads((tmp_path / "sim" / "run.json").read_text())
    expected = {"tiny-qwen2vl": "qwen2_vl", "tiny-qwen25vl": "qwen2_5_vl", "tiny-internvl": "internvl"}[name]
    assert info["backbone"]["family"] == expected
    score = runner.invoke(app, ["score", "--sim", str(tmp_path / "sim"), "--sessions",
                                str(synth_dir / "sessions.parquet"), "--out", str(tmp_path / "score")])
    assert score.exit_code == 0, score.output
    metrics = json.loads((tmp_path / "score" / "metrics.json").read_text())
    assert metrics["n_samples"] == 24


@pytest.mark.parametrize("model_type, message", [
    ("llava", "'llava' is not supported (supported: qwen2_vl, qwen2_5_vl, qwen3_vl, internvl)"),
    ("internvl_chat", "remote-code InternVL release"),
])
def test_unsupported_architectures_are_clear_errors(tmp_path, model_type, message):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    with pytest.raises(ValidationError, match=re.escape(message)):
        load(tmp_path, device="cpu")
