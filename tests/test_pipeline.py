"""The one batch pipeline and the op plan: rows of different slate geometry share a batch correctly, and the
plan names exactly what runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fixate_rt import ops
from fixate_rt.backbones import load
from fixate_rt.data.slates import Layout
from fixate_rt.errors import UnavailableError
from fixate_rt.pipeline import Batch, BatchPipeline
from fixate_rt.plan import plan_ops


def _slate(size: tuple[int, int], n_slots: int, seed: int) -> tuple[Image.Image, Layout]:
    """A noise image with ``n_slots`` boxes in one row (or column, for tall images) across it."""
    W, H = size
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    if W >= H:
        boxes = [[W * i / n_slots, 0, W * (i + 1) / n_slots, H] for i in range(n_slots)]
    else:
        boxes = [[0, H * i / n_slots, W, H * (i + 1) / n_slots] for i in range(n_slots)]
    return image, Layout((W, H), np.asarray(boxes, np.float32), tuple("ABCDEFGH"[:n_slots]))


@pytest.mark.parametrize("model, wide, tall", [
    ("tiny-qwen3vl", (600, 400), (400, 600)),  # same token count, transposed merged grids
    ("tiny-internvl", (896, 448), (448, 896)),  # 2×1 vs 1×2 tiles (+ thumbnail): same count, other tile order
])
def test_mixed_geometry_rows_equal_each_row_alone(model, wide, tall):
    bb = load(model, device="cpu")
    (img_w, lay_w), (img_t, lay_t) = _slate(wide, 4, 0), _slate(tall, 3, 1)
    feats_w, feats_t = bb.encode_slate(img_w), bb.encode_slate(img_t)
    assert feats_w.n_tokens == feats_t.n_tokens  # so they may share a batch
    assert not np.array_equal(feats_w.token_boxes, feats_t.token_boxes)  # but the grids differ
    pipe = BatchPipeline(bb, plan_ops("rollout", "auto", bb.device), layers=bb.default_probe_layers)
    mixed = pipe.run(Batch(["likes drama", "likes comedy"], [feats_w, feats_t], [lay_w, lay_t]))
    alone_w = pipe.run(Batch.one_slate(["likes drama"], feats_w, lay_w))
    alone_t = pipe.run(Batch.one_slate(["likes comedy"], feats_t, lay_t))
    assert mixed.slot_relevance.shape == (2, 4) and mixed.n_slots.tolist() == [4, 3]
    torch.testing.assert_close(mixed.slot_relevance[0], alone_w.slot_relevance[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mixed.slot_relevance[1, :3], alone_t.slot_relevance[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mixed.p_click[1, :3], alone_t.p_click[0], atol=1e-6, rtol=1e-5)
    assert mixed.slot_relevance[1, 3] == 0 and mixed.p_click[1, 3] == 0  # the padding slot
    # Pooling row 1 on row 0's grid (slot boxes rescaled into its frame), as a shared-grid batch would, is wrong:
    scale = torch.tensor([wide[0] / tall[0], wide[1] / tall[1]] * 2)

    token_rel = bb.probe(bb.build_inputs(["likes comedy"], lay_t.labels, feats_t, 0), feats_t, None,
                         bb.label_token_ids(lay_t.labels), pipe.plan, layers=pipe.layers).token_relevance
    wrong = ops.slot_pool(token_rel, feats_w.token_boxes, torch.from_numpy(lay_t.boxes)[None] * scale)
    assert (wrong[0] - alone_t.slot_relevance[0]).abs().max() > 1e-3


def test_plan_records_what_runs_on_cpu():

    cpp = ops.cpp_available()
    plan = plan_ops("rollout", "auto", "cpu")
    probe_op = ({"rollout_row_qk": {"impl": "cpp", "device": "cpu", "capture": "qk_cpp"}} if cpp
                else {"rollout_row": {"impl": "torch", "device": "cpu", "capture": "mean"}})
    assert plan.record() == {**probe_op, "slot_pool": {"impl": "cpp" if cpp else "torch", "device": "cpu"}}
    eager = plan_ops("rollout", "torch", "cpu")  # --kernel torch keeps the eager capture and the torch row
    assert (eager.combine_op, eager.capture) == ("rollout_row", "mean")
    glimpse = plan_ops("glimpse", "torch", "cpu")
    assert (glimpse.combine_op, glimpse.combine_impl, glimpse.capture) == ("glimpse_row", "torch", "heads")
    train = plan_ops("attnlrp", "auto", "cpu", needs_grad=True)
    assert train.differentiable and train.combine_impl == train.pool_impl == "torch" and train.capture == "row"
    assert train.grad_scale == 0.1 and train.record()["attnlrp_row"]["grad_scale"] == 0.1  # the reference's scale
    assert plan_ops("glimpse", "auto", "cpu", needs_grad=True).grad_scale == 1.0 and plan.grad_scale == 1.0
    exported = plan_ops("rollout", "auto", "cpu", backend="onnx")
    impl = "cpp" if ops.cpp_available() else "torch"  # Q/K from the graph, the row by the registry op
    assert exported.record()["rollout_row_qk"] == {"impl": impl, "device": "cpu", "capture": "onnx-graph-qk"}


def test_plan_refuses_what_cannot_run():
    with pytest.raises(UnavailableError, match="needs gradients"):
        plan_ops("glimpse", "auto", "cpu", backend="export")
    with pytest.raises(UnavailableError, match="rollout_row: impl .cpp. unavailable"):
        plan_ops("rollout", "cpp", "cuda")


def test_training_pipeline_needs_a_backend_with_gradients(tiny):
    class NoGrad:
        kind = __import__("fixate_rt.config", fromlist=["BackendKind"]).BackendKind.onnx
        supports_grad = False
        device = torch.device("cpu")

    with pytest.raises(UnavailableError, match="training needs --backend torch"):
        BatchPipeline(NoGrad(), plan_ops("rollout", "torch", "cpu", needs_grad=True), layers=(0,))
