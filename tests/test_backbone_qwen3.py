"""The Qwen3-VL adapter on the tiny real model: positions, DeepStack, padding, capture, geometry."""

import numpy as np
import pytest
import torch
from PIL import Image

from fixate_rt.data.layout import LETTERS
from fixate_rt.errors import ValidationError


@pytest.fixture(scope="module")
def slate_image(synth_dir):
    return Image.open(synth_dir / "slates" / "s000.png").convert("RGB")


@pytest.fixture(scope="module")
def feats(tiny, slate_image):
    return tiny.encode_slate(slate_image)


def _plain_forward(tiny, image, profile):
    """The model's own, unmodified path: input_ids + pixel_values; positions computed by HF itself."""
    pixel_values, grid = tiny.processor.preprocess_image(image)
    n_tokens = int(grid.prod()) // 4
    ids, types = tiny.processor.encode(profile, LETTERS, n_tokens)
    with torch.no_grad():
        out = tiny.model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, image_grid_thw=grid,
                         mm_token_type_ids=torch.tensor([types]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out.logits[0, -1], ids, types, grid


def test_no_prompt_equals_plain_forward(tiny, slate_image, feats):
    plain, *_ = _plain_forward(tiny, slate_image, "Top_genre: Drama")
    label_ids = tiny.label_token_ids(LETTERS)
    inputs = tiny.build_inputs(["Top_genre: Drama"], LETTERS, feats, n_soft=0)
    with torch.no_grad():
        ours = tiny.decode(inputs, feats, None, label_ids).label_logits[0]
    torch.testing.assert_close(ours, plain[label_ids], atol=1e-5, rtol=1e-5)


def test_prompt_shifts_image_positions_by_n(tiny, slate_image, feats):
    n = 5
    _, ids, types, grid = _plain_forward(tiny, slate_image, "x")
    plain_pos, _ = tiny.model.model.get_rope_index(torch.tensor([ids]), torch.tensor([types]), grid,
                                                   attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    inputs = tiny.build_inputs(["x"], LETTERS, feats, n_soft=n)
    pos = inputs.position_ids
    assert pos.shape == (3, 1, len(ids) + n)
    img = torch.tensor(types) == 1
    ours_img = pos[:, 0, n:][:, img]
    torch.testing.assert_close(ours_img, plain_pos[:, 0][:, img] + n)
    # 2-D M-RoPE survives: the image block's height and width axes are not all equal (1-D fallback would be).
    assert not torch.equal(ours_img[1], ours_img[2])
    torch.testing.assert_close(pos[:, 0, :n], torch.arange(n).expand(3, n))


def test_deepstack_features_are_used(tiny, feats):
    import dataclasses

    label_ids = tiny.label_token_ids(LETTERS)
    inputs = tiny.build_inputs(["x"], LETTERS, feats, 0)
    no_ds = dataclasses.replace(feats, deepstack=[torch.zeros_like(f) for f in feats.deepstack])
    with torch.no_grad():
        a = tiny.decode(inputs, feats, None, label_ids).label_logits
        b = tiny.decode(inputs, no_ds, None, label_ids).label_logits
    assert len(feats.deepstack) == 2
    assert (a - b).abs().max() > 1e-4, "zeroing DeepStack features must change the output"


def test_left_padding_does_not_change_results(tiny, feats):
    label_ids = tiny.label_token_ids(LETTERS)
    profiles = ["Top_genre: Drama", "Top_genre: Comedy, Preferred_genres: Horror, Crime, Action, Drama"]
    prompts = torch.randn(2, 4, tiny.hidden_size) * 0.5
    with torch.no_grad():
        both = tiny.decode(tiny.build_inputs(profiles, LETTERS, feats, 4), feats, prompts, label_ids, (6, 7))
        alone = tiny.decode(tiny.build_inputs(profiles[:1], LETTERS, feats, 4), feats, prompts[:1], label_ids, (6, 7))
    torch.testing.assert_close(both.label_logits[:1], alone.label_logits, atol=1e-5, rtol=1e-5)
    pad = both.attentions[7].shape[-1] - alone.attentions[7].shape[-1]
    assert pad > 0
    torch.testing.assert_close(both.attentions[7][0, -1, pad:], alone.attentions[7][0, -1], atol=1e-6, rtol=1e-5)


def test_soft_prompt_changes_the_answer_logits(tiny, feats):
    label_ids = tiny.label_token_ids(LETTERS)
    inputs = tiny.build_inputs(["x", "x"], LETTERS, feats, 4)
    prompts = torch.stack([torch.zeros(4, tiny.hidden_size), torch.randn(4, tiny.hidden_size)])
    with torch.no_grad():
        logits = tiny.decode(inputs, feats, prompts, label_ids).label_logits
    assert (logits[0] - logits[1]).abs().max() > 1e-3


def test_capture_equals_eager_output_attentions(tiny, slate_image):
    """Probed layers captured under SDPA equal the all-layers eager `output_attentions` maps."""
    pixel_values, grid = tiny.processor.preprocess_image(slate_image)
    ids, types = tiny.processor.encode("x", LETTERS, int(grid.prod()) // 4)
    kwargs = dict(input_ids=torch.tensor([ids]), pixel_values=pixel_values, image_grid_thw=grid,
                  mm_token_type_ids=torch.tensor([types]))
    tiny.model.set_attn_implementation({"text_config": "eager", "vision_config": "sdpa"})
    try:
        with torch.no_grad():
            eager = tiny.model(**kwargs, output_attentions=True).attentions
    finally:
        tiny.model.set_attn_implementation({"text_config": "fixate_capture", "vision_config": "sdpa"})
    feats = tiny.encode_slate(slate_image)
    inputs = tiny.build_inputs(["x"], LETTERS, feats, 0)
    with torch.no_grad():
        out = tiny.decode(inputs, feats, None, tiny.label_token_ids(LETTERS), probe_layers=(5, 7))
    assert sorted(out.attentions) == [5, 7]
    for layer in (5, 7):
        torch.testing.assert_close(out.attentions[layer][0], eager[layer][0].mean(0), atol=1e-5, rtol=1e-4)


def test_token_boxes_tile_the_original_image_row_major(tiny, slate_image, feats):
    boxes = feats.token_boxes
    _, gh, gw = (int(v) for v in feats.grid_thw[0])
    assert boxes.shape == (gh * gw // 4, 4) == (feats.n_tokens, 4)
    W, H = slate_image.size
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum()
    assert area == pytest.approx(W * H, rel=1e-5)
    assert boxes[0, 0] == 0 and boxes[0, 1] == 0
    w = gw // 2
    assert boxes[1, 0] > boxes[0, 0] and boxes[1, 1] == boxes[0, 1], "second token is to the right (row-major)"
    assert boxes[w, 1] > boxes[0, 1] and boxes[w, 0] == 0, "token w starts the second row"
    np.testing.assert_allclose(boxes[-1, 2:], [W, H], rtol=1e-6)


def test_real_qwen3_geometry_gives_646_tokens(tiny):
    """With the stock Qwen3-VL processor limits a 1100×619 slate becomes 19×34 = 646 merged tokens."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from fixate_rt.backbones.processor import QwenVLProcessor

    size = {"shortest_edge": 3136, "longest_edge": 16777216}
    proc = QwenVLProcessor(tiny.processor.tokenizer, Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, size=size))
    _, grid = proc.preprocess_image(Image.new("RGB", (1100, 619)))
    assert grid.tolist() == [[1, 38, 68]]
    assert proc.token_boxes(grid, (1100, 619)).shape == (646, 4)


def test_multi_token_label_is_a_clear_error(tiny):
    with pytest.raises(ValidationError, match="answer label 'Zebra' is not a single known token"):
        tiny.label_token_ids(("A", "Zebra"))
