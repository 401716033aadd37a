"""Export of the tiny Qwen3-VL and InternVL in three formats (ONNX, torch.export, TorchScript): validation,
backend parity with the torch backend (same clicks, p_click and slot_relevance within 1e-4), clear errors."""

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fixate_rt import ops
from fixate_rt.cli import app
from fixate_rt.run.layout import read_simulation

pytestmark = pytest.mark.slow  # left out of the quick subset: bash scripts/test.sh -m "not slow"

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'fixate-rt[onnx]'")
runner = CliRunner()


FORMATS = {"onnx": "onnx", "export": "pt2", "torchscript": "pt"}


@pytest.fixture(scope="module", params=[(m, f) for m in ("tiny-qwen3vl", "tiny-internvl") for f in FORMATS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def exported_any(request, tmp_path_factory):
    name, fmt = request.param
    return name, fmt, _export(name, fmt, tmp_path_factory)


@pytest.fixture(scope="module", params=["tiny-qwen3vl", "tiny-internvl"])
def exported(request, tmp_path_factory):
    """The ONNX exports (for the ONNX-specific tests), shared with ``exported_any``."""
    return request.param, _export(request.param, "onnx", tmp_path_factory)


_EXPORTS: dict = {}


def rehash(folder):
    """Record the current SHA-256 of every file in the manifest (as whoever changed the files could)."""
    from fixate_rt.io import sha256_file

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _export(name, fmt, tmp_path_factory):
    if (name, fmt) not in _EXPORTS:
        out = tmp_path_factory.mktemp(f"{name}-{fmt}")
        result = runner.invoke(app, ["export", "--model", name, "--out", str(out), "--format", fmt])
        assert result.exit_code == 0, result.output + (result.stderr or "")
        _EXPORTS[name, fmt] = out
    return _EXPORTS[name, fmt]


def test_export_writes_graphs_manifest_and_validates(exported_any):
    name, fmt, out = exported_any
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"vision", "embed", "decoder"} and manifest["runtime"] == fmt
    assert all(g["file"].endswith("." + FORMATS[fmt]) and (out / g["file"]).is_file() for g in manifest["graphs"].values())
    assert manifest["family"] == {"tiny-qwen3vl": "qwen3_vl", "tiny-internvl": "internvl"}[name]
    assert {o["name"] for o in manifest["graphs"]["decoder"]["outputs"]} == {"logits", "probe_q", "probe_k"}
    assert manifest["probe"]["name"] == "qk" and manifest["probe"]["version"] == 2 and manifest["probe"]["scale"] > 0
    assert manifest["validation"] and max(manifest["validation"].values()) < 1e-4
    for file in ("tokenizer.json", "preprocessor_config.json", "config.json"):
        assert (out / file).is_file()


def test_exported_backend_matches_torch(exported_any, synth_dir, tmp_path):
    name, fmt, out = exported_any
    tables = {}
    for backend in ("torch", fmt):
        model = name if backend == "torch" else str(out)
        result = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                     str(synth_dir / "slates"), "--out", str(tmp_path / backend), "--device", "cpu",
                                     "--model", model, "--backend", backend, "--samples", "2", "--batch-size", "3",
                                     *(["--trust-export"] if backend in ("export", "torchscript") else [])])
        assert result.exit_code == 0, result.output + (result.stderr or "")
        tables[backend] = read_simulation(tmp_path / backend)[0].to_pydict()
    assert tables["torch"]["click_slot"] == tables[fmt]["click_slot"]
    for column in ("p_click", "slot_relevance"):
        diff = np.abs(np.array(tables["torch"][column]) - np.array(tables[fmt][column])).max()
        assert diff < 1e-4, (column, diff)
    run = json.loads((tmp_path / fmt / "run.json").read_text())
    assert run["backend"] == fmt
    impl = "cpp" if ops.cpp_available() else "torch"  # the same registry op as the torch backend, on Q/K from the graph
    assert run["implementations"]["rollout_row_qk"] == {"impl": impl, "device": "cpu", "capture": f"{fmt}-graph-qk"}
    if fmt == "onnx":  # the parity above holds for the decoder on fixate-rt's causal attention kernel
        expected = "fixate_rt.CausalAttention" if ops.cpp_available() else "onnxruntime Attention"
        assert run["export_runtime"]["decoder_attention"].startswith(expected)
        # ... and the rollout row read the log-sum-exp that kernel computed for the probed layers
        assert run["export_runtime"]["rollout_lse_from_graph"] is ops.cpp_available()
        if ops.cpp_available():  # every norm on fixate-rt's op too
            assert run["export_runtime"]["decoder_custom_ops"] == ["fixate_rt.CausalAttention", "fixate_rt.RMSNorm"]


def test_exported_backend_matches_torch_on_a_padded_batch(exported_any, monkeypatch):
    """Profiles of different lengths pad the batch: every format gives the torch backend's p_click and slot relevance
    (ONNX: the fused attention, its log-sum-exp read by the rollout row; torch.export: each layer's SDPA rewritten
    at load to run the C++ causal kernel on the key mask)."""
    from fixate_rt.backends import graph_runtime
    from fixate_rt.data.layout import recgaze_layout
    from fixate_rt.data.render import render_slate
    from fixate_rt.simulate import Simulator

    name, fmt, out = exported_any
    image = render_slate([{"title": "Blue Moon", "genre": "Drama"}] * 15, ["Drama", "Comedy", "Crime"],
                         np.random.default_rng(0))
    users = ["a", "b", "c"]
    profiles = ["Top_genre: Drama", "Top_genre: Drama, Preferred_genres: Crime, Comedy, Thriller, War", ""]
    sims = [Simulator(model, device="cpu", batch_size=3, backend=backend, trust_export=backend != "torch")
            for model, backend in ((name, "torch"), (str(out), fmt))]
    results = [sims[0].simulate_slate(image, recgaze_layout(), users, profiles)]
    kernel_calls = []
    kernel = ops.causal_attention_cpp
    monkeypatch.setattr(ops, "causal_attention_cpp", lambda *a: kernel_calls.append(1) or kernel(*a))
    results.append(sims[1].simulate_slate(image, recgaze_layout(), users, profiles))
    np.testing.assert_allclose(results[1].p_click, results[0].p_click, atol=1e-4)
    np.testing.assert_allclose(results[1].slot_relevance, results[0].slot_relevance, atol=1e-4)
    if fmt == "export" and ops.cpp_available():
        targets = [n.target for n in sims[1].backend.sessions["decoder"]._fn.graph.nodes]
        assert graph_runtime._attention in targets  # every layer's attention, none left on SDPA
        assert torch.ops.aten.scaled_dot_product_attention.default not in targets
        assert kernel_calls  # the decoders' mask was recognised: the C++ kernel ran


def test_export_folder_run_with_the_wrong_backend(exported_any, synth_dir, tmp_path):
    _, fmt, out = exported_any
    other = "export" if fmt != "export" else "onnx"
    result = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                 str(synth_dir / "slates"), "--out", str(tmp_path), "--model", str(out), "--backend", other])
    assert result.exit_code == 2 and f"this export is in format '{fmt}'; run it with --backend {fmt}" in result.stderr


def test_corrupt_graph_is_named_for_every_format(exported_any, synth_dir, tmp_path):
    _, fmt, out = exported_any
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / f"decoder.{FORMATS[fmt]}").write_bytes(b"garbage")
    args = ["simulate", "--users", str(synth_dir / "users.parquet"), "--images", str(synth_dir / "slates"), "--out",
            str(tmp_path / "o"), "--model", str(broken), "--backend", fmt, "--trust-export"]
    result = runner.invoke(app, args)  # changed after export: the recorded SHA-256 catches it
    assert result.exit_code == 2 and f"decoder.{FORMATS[fmt]}" in result.stderr and "SHA-256" in result.stderr
    rehash(broken)  # a folder whose manifest agrees with the broken file: the runtime names it
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and f"decoder.{FORMATS[fmt]}" in result.stderr and "cannot load" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


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
    rehash(broken)
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


def test_unknown_format_is_clear(tmp_path):
    result = runner.invoke(app, ["export", "--out", str(tmp_path), "--format", "tflite"])
    message = " ".join(result.stderr.replace("│", " ").split())  # Typer wraps its error box
    assert result.exit_code == 2 and "'tflite' is not one of 'onnx', 'export', 'torchscript'" in message


def test_torchscript_is_marked_legacy(exported_any):
    _, fmt, out = exported_any
    manifest = json.loads((out / "manifest.json").read_text())
    assert ("legacy" in manifest) == (fmt == "torchscript")


def test_int8_export_runs_and_says_so(synth_dir, tmp_path):
    out = tmp_path / "int8"
    result = runner.invoke(app, ["export", "--out", str(out), "--quantize", "int8"])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"]["decoder"].startswith("int8")
    import onnx

    graph = onnx.load(str(out / "decoder.onnx"), load_external_data=False).graph
    assert any(n.op_type in ("DynamicQuantizeLinear", "MatMulInteger") for n in graph.node)
    result = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                 str(synth_dir / "slates"), "--out", str(tmp_path / "sim"), "--model", str(out)])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    run = json.loads((tmp_path / "sim" / "run.json").read_text())
    assert run["quantization"] == manifest["quantization"]
    assert np.isfinite(np.array(read_simulation(tmp_path / "sim")[0].column("p_click").to_pylist())).all()


def test_quantize_needs_onnx(tmp_path):
    result = runner.invoke(app, ["export", "--out", str(tmp_path / "q"), "--format", "export", "--quantize", "int8"])
    assert result.exit_code == 2 and "only --format onnx has a quantised form" in result.stderr
    assert not (tmp_path / "q").exists()


def test_export_of_an_older_probe_contract_is_refused(exported, synth_dir, tmp_path):
    """Folders whose decoder computed the rollout row in the graph (before the qk contract) say to re-export."""
    _, out = exported
    old = tmp_path / "old"
    shutil.copytree(out, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["probe"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                                 str(synth_dir / "slates"), "--out", str(tmp_path / "o"), "--model", str(old)])
    assert result.exit_code == 2 and "re-export" in result.stderr and "probe contract qk v2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
