"""Loading an export folder never runs code and never reads outside the folder; export folders describe
themselves (backend, prompt bank, served slate sizes), and every mismatch is one line before any loading."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fixate_rt.cli import app
from test_export import rehash

runner = CliRunner()


class OpensAFile:
    """A pickle payload: unpickling it calls open(marker, "w"), which leaves a file behind if it ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Synthetic data, a small trained bank, and onnx / export folders that ship it."""
    root = tmp_path_factory.mktemp("safety")
    from fixate_rt.data.synth import SynthConfig, write_synth

    write_synth(root / "data", SynthConfig(n_users=4, n_slates=3, seed=11))
    result = runner.invoke(app, ["train", "--sessions", str(root / "data" / "sessions.parquet"), "--images",
                                 str(root / "data" / "slates"), "--users", str(root / "data" / "users.parquet"),
                                 "--out", str(root / "train"), "--epochs", "1", "--basis", "2", "--soft-tokens", "2",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    for fmt in ("onnx", "export"):
        result = runner.invoke(app, ["export", "--out", str(root / fmt), "--format", fmt, "--prompts",
                                     str(root / "train" / "prompts.safetensors")])
        assert result.exit_code == 0, result.output + (result.stderr or "")
    return root


def _simulate(root, out, *extra):
    return runner.invoke(app, ["simulate", "--users", str(root / "data" / "users.parquet"), "--images",
                               str(root / "data" / "slates"), "--out", str(out), "--samples", "2", "--device", "cpu",
                               *extra])


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _rewrite_pt2(path, edit):
    """Rewrite the zip archive at ``path``: ``edit(name, data) -> data`` for each entry."""
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info.filename)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for info, data in entries:
            z.writestr(info, edit(info.filename, data))


def test_export_folder_alone_reproduces_the_trained_torch_run(trained, tmp_path):
    """`simulate --model EXPORT_DIR` with no other flag: its format and its shipped bank are used."""
    torch_run = _simulate(trained, tmp_path / "torch", "--prompts", str(trained / "train" / "prompts.safetensors"))
    assert torch_run.exit_code == 0, torch_run.output
    expected = pq.read_table(tmp_path / "torch" / "simulations.parquet").to_pydict()
    for fmt in ("onnx", "export"):
        result = _simulate(trained, tmp_path / fmt, "--model", str(trained / fmt))
        assert result.exit_code == 0, result.output + (result.stderr or "")
        got = pq.read_table(tmp_path / fmt / "simulations.parquet").to_pydict()
        assert got["click_slot"] == expected["click_slot"]
        assert not any(got["cold_start"])
        diff = np.abs(np.array(got["p_click"]) - np.array(expected["p_click"])).max()
        assert diff < 1e-4, (fmt, diff)
        run = json.loads((tmp_path / fmt / "run.json").read_text())
        assert run["backend"] == fmt


def test_malicious_pickled_weight_is_refused_and_never_runs(trained, tmp_path):
    folder = tmp_path / "evil"
    shutil.copytree(trained / "export", folder)
    marker = tmp_path / "payload-ran"

    def poison(name, data):
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            poison.target = first["path_name"]
            return json.dumps(config).encode()
        return data

    _rewrite_pt2(folder / "decoder.pt2", poison)
    _rewrite_pt2(folder / "decoder.pt2",
                 lambda name, data: pickle.dumps(OpensAFile(marker)) if name.endswith("/" + poison.target) else data)
    rehash(folder)  # whoever crafted the folder also wrote its manifest: the digest check alone cannot stop this
    result = _simulate(trained, tmp_path / "o", "--model", str(folder))
    _one_line_error(result, "decoder.pt2", "refused to load", "stored as a pickle")
    assert not marker.exists()
    assert not (tmp_path / "o" / "simulations.parquet").exists()


def test_malicious_sample_inputs_are_refused_and_never_run(trained, tmp_path):
    """torch.export.load falls back to an unrestricted unpickler for the sample inputs: they are checked first."""
    folder = tmp_path / "evil"
    shutil.copytree(trained / "export", folder)
    marker = tmp_path / "payload-ran"
    _rewrite_pt2(folder / "embed.pt2",
                 lambda name, data: pickle.dumps(OpensAFile(marker)) if "sample_inputs" in name else data)
    rehash(folder)
    result = _simulate(trained, tmp_path / "o", "--model", str(folder))
    _one_line_error(result, "embed.pt2", "refused to load", "not plain tensors")
    assert not marker.exists()


def test_changed_file_is_caught_by_its_digest(trained, tmp_path):
    folder = tmp_path / "changed"
    shutil.copytree(trained / "onnx", folder)
    with open(folder / "tokenizer.json", "a") as fh:
        fh.write(" ")
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder)), "tokenizer.json", "SHA-256")


@pytest.mark.parametrize("name", ["../decoder.onnx", "/etc/passwd", "link.onnx"])
def test_manifest_paths_must_stay_inside_the_folder(trained, tmp_path, name):
    folder = tmp_path / "escape"
    shutil.copytree(trained / "onnx", folder)
    (tmp_path / "decoder.onnx").write_bytes((folder / "decoder.onnx").read_bytes())
    (folder / "link.onnx").symlink_to(tmp_path / "decoder.onnx")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["graphs"]["decoder"]["file"] = name
    (folder / "manifest.json").write_text(json.dumps(manifest))
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder)), "leaves the export folder"
                    if name != "link.onnx" else "a link leading out of the export folder")


def test_prompt_bank_must_fit_the_export(trained, tmp_path):
    from fixate_rt.prompts import SoftPromptBank

    wide = SoftPromptBank.init(["u0"], n_basis=2, n_tokens=2, hidden_size=32, backbone="tiny-qwen3vl")
    wide.save(tmp_path / "wide.safetensors")
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(trained / "onnx"), "--prompts",
                              str(tmp_path / "wide.safetensors")), "hidden size 32", "64")
    other = SoftPromptBank.init(["u0"], n_basis=2, n_tokens=2, hidden_size=64, backbone="tiny-qwen2vl")
    other.save(tmp_path / "other.safetensors")
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(trained / "onnx"), "--prompts",
                              str(tmp_path / "other.safetensors")), "trained on backbone 'tiny-qwen2vl'")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_unserved_slate_size_is_refused_before_loading(trained, tmp_path):
    out = tmp_path / "small"
    result = runner.invoke(app, ["export", "--out", str(out), "--format", "onnx", "--image-size", "640x360"])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(out)), "1100x619 is not served",
                    "serves 640x360", "--image-size 1100x619")


def test_one_export_serves_several_slate_sizes(trained, tmp_path):
    out = tmp_path / "two"
    result = runner.invoke(app, ["export", "--out", str(out), "--format", "onnx", "--image-size", "640x360",
                                 "--image-size", "1100x619"])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["graph"] for e in manifest["vision"]["sizes"]] == ["vision", "vision_1"]
    assert {"vision.vision_features", "vision_1.vision_features"} <= set(manifest["validation"]) or \
        any(k.startswith("vision_1.") for k in manifest["validation"])
    result = _simulate(trained, tmp_path / "o", "--model", str(out))
    assert result.exit_code == 0, result.output + (result.stderr or "")


def test_torchscript_needs_explicit_trust(tmp_path, trained):
    out = tmp_path / "ts"
    result = runner.invoke(app, ["export", "--out", str(out), "--format", "torchscript"])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(out)), "--trust-export")
    result = _simulate(trained, tmp_path / "o2", "--model", str(out), "--trust-export")
    assert result.exit_code == 0, result.output + (result.stderr or "")


def test_torch_backend_given_an_export_folder_is_one_line(trained, tmp_path):
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(trained / "onnx"), "--backend", "torch"),
                    "an export folder (format 'onnx')", "--backend auto")
