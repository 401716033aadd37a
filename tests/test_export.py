"""ONNX export of the tiny Qwen3-VL and InternVL: validation, ONNX Runtime backend parity, clear errors."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from fixate_rt.cli import app

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'fixate-rt[onnx]'")
runner = CliRunner()


@pytest.fixture(scope="module", params=["tiny-qwen3vl", "tiny-internvl"])
def exported(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    result = runner.invoke(app, ["export", "--model", request.param, "--out", str(out)])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return request.param, out


def test_export_writes_graphs_manifest_and_validates(exported):
    name, out = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"vision", "embed", "decoder"}
    assert manifest["family"] == {"tiny-qwen3vl": "qwen3_vl", "tiny-internvl": "internvl"}[name]
    assert {o["name"] for o in manifest["graphs"]["decoder"]["outputs"]} == {"logits", "rollout_row"}
    assert manifest["validation"] and max(manifest["validation"].values()) < 1e-4
    for file in ("tokenizer.json", "preprocessor_config.json", "config.json"):
        assert (out / file).is_file()


def test_onnx_backend_matches_torch(exported, synth_dir, tmp_path):
    name, out = exported
    tables = {}
    for backend in ("torch", "onnx"):
        model = name if backend == "torch" else str(out)
        result = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                     str(synth_dir / "slates"), "--out", str(tmp_path / backend), "--device", "cpu",
                                     "--model", model, "--backend", backend, "--samples", "2", "--batch-size", "3"])
        assert result.exit_code == 0, result.output + (result.stderr or "")
        tables[backend] = pq.read_table(tmp_path / backend / "simulations.parquet").to_pydict()
    assert tables["torch"]["click_slot"] == tables["onnx"]["click_slot"]
    for column in ("p_click", "slot_relevance"):
        diff = np.abs(np.array(tables["torch"][column]) - np.array(tables["onnx"][column])).max()
        assert diff < 1e-4, (column, diff)
    run = json.loads((tmp_path / "onnx" / "run.json").read_text())
    assert run["backend"] == "onnx" and run["implementations"]["rollout_row"] == "onnx-graph"


def test_gradient_probes_are_refused_on_onnx(exported, synth_dir, tmp_path):
    _, out = exported
    result = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                 str(synth_dir / "slates"), "--out", str(tmp_path), "--model", str(out), "--backend",
                                 "onnx", "--probe", "glimpse"])
    assert result.exit_code == 2 and "needs gradients: torch backend only" in result.stderr


def test_corrupt_or_incomplete_export_folder(exported, synth_dir, tmp_path):
    _, out = exported
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    args = ["simulate", "--users", str(synth_dir / "users.parquet"), "--images", str(synth_dir / "slates"),
            "--out", str(tmp_path / "o"), "--model", str(broken), "--backend", "onnx"]
    (broken / "vision.onnx").write_bytes(b"not an onnx graph")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "vision.onnx" in result.stderr and "cannot load" in result.stderr
    (broken / "manifest.json").unlink()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "not a fixate-rt export folder" in result.stderr


def test_numpy_mrope_positions_equal_the_models(tiny, synth_dir):
    from PIL import Image

    from fixate_rt.backends.positions import mrope_positions
    from fixate_rt.data.layout import LETTERS

    feats = tiny.encode_slate(Image.open(synth_dir / "slates" / "s000.png"))
    inputs = tiny.build_inputs(["x", "Top_genre: Drama, Preferred_genres: Crime"], LETTERS, feats, 5)
    h, w = int(feats.grid_thw[0, 1]) // 2, int(feats.grid_thw[0, 2]) // 2
    ours = mrope_positions(inputs.mm_token_type_ids.numpy(), inputs.attention_mask.numpy(), [(h, w)] * 2)
    torch.testing.assert_close(torch.from_numpy(ours), inputs.position_ids.cpu())


def test_unavailable_formats_are_clear(tmp_path):
    result = runner.invoke(app, ["export", "--out", str(tmp_path), "--format", "torchscript"])
    assert result.exit_code == 2 and "not available yet" in result.stderr
