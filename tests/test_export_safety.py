"""Loading an export folder never runs code and never reads outside the folder; export folders describe
themselves (backend, prompt bank, served slate sizes), and every mismatch is one line before any loading.

The trust model (fixate_rt/backends/trust.py): ONNX loads without trust; torch.export and TorchScript folders only
with --trust-export or a valid signature (--verify-key); a .pt2 is inspected with torch's own reader even then."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile

import numpy as np
import pytest
from test_export import rehash
from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.run.layout import read_simulation

pytestmark = pytest.mark.slow  # left out of the quick subset: bash scripts/test.sh -m "not slow"

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
                                 "--device", "cpu", "--model", "tiny-qwen3vl"])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    for fmt in ("onnx", "export"):
        result = runner.invoke(app, ["export", "--out", str(root / fmt), "--format", fmt, "--model", "tiny-qwen3vl",
                                     "--prompts", str(root / "train" / "prompts.safetensors")])
        assert result.exit_code == 0, result.output + (result.stderr or "")
    return root


def _simulate(root, out, *extra):
    return runner.invoke(app, ["simulate", "--users", str(root / "data" / "users.parquet"), "--images",
                               str(root / "data" / "slates"), "--out", str(out), "--samples", "2", "--device", "cpu",
                               *(("--model", "tiny-qwen3vl") if "--model" not in extra else ()), *extra])


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
    expected = read_simulation(tmp_path / "torch")[0].to_pydict()
    for fmt in ("onnx", "export"):
        trust = ["--trust-export"] if fmt == "export" else []  # ONNX needs none: its loader runs no code
        result = _simulate(trained, tmp_path / fmt, "--model", str(trained / fmt), *trust)
        assert result.exit_code == 0, result.output + (result.stderr or "")
        got = read_simulation(tmp_path / fmt)[0].to_pydict()
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
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder)), "can run code", "--verify-key")
    # even a folder the user trusts is inspected: a plain exported program holds no pickle
    result = _simulate(trained, tmp_path / "o", "--model", str(folder), "--trust-export")
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
    result = _simulate(trained, tmp_path / "o", "--model", str(folder), "--trust-export")
    _one_line_error(result, "embed.pt2", "refused to load", "pickled sample inputs")
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


def test_exports_write_no_pickle_at_all(trained):
    """fixate-rt's own .pt2 archives hold JSON and raw tensors only (the sample inputs are left empty)."""
    import torch

    for graph in ("vision", "embed", "decoder"):
        reader = torch._C.PyTorchFileReader(str(trained / "export" / f"{graph}.pt2"))
        sample = [n for n in reader.get_all_records() if "sample_inputs" in n]
        assert sample and all(reader.get_record_size(n) == 0 for n in sample)


def test_duplicate_archive_entries_are_refused_before_torch_reads_them(trained, tmp_path):
    """Two entries with one name: zipfile reads the last copy, torch's reader the first. A pickle placed first
    would run while a check through zipfile sees the benign copy, so duplicates are refused outright."""
    import warnings

    folder = tmp_path / "dup"
    shutil.copytree(trained / "export", folder)
    marker = tmp_path / "payload-ran"
    path = folder / "embed.pt2"
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info.filename)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        for info, data in entries:
            if "sample_inputs" in info.filename:
                z.writestr(info, pickle.dumps(OpensAFile(marker)))  # the copy torch would read
            z.writestr(info, data)
    rehash(folder)
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder), "--trust-export"), "embed.pt2",
                    "duplicate archive entry")
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_native_library_in_archive_is_refused(trained, tmp_path):
    """An AOTInductor shared object in a .pt2 is dlopened by torch.export.load: its constructor would run."""
    folder = tmp_path / "aoti"
    shutil.copytree(trained / "export", folder)
    with zipfile.ZipFile(folder / "decoder.pt2", "a") as z:
        z.writestr("decoder/data/aotinductor/model/model.wrapper.so", b"\x7fELF" + b"\x00" * 60)
    rehash(folder)
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder), "--trust-export"), "decoder.pt2",
                    "native library")


def test_compressed_archive_entry_is_refused(trained, tmp_path):
    """A small archive that inflates to a huge entry (torch writes every entry stored, never compressed)."""
    folder = tmp_path / "bomb"
    shutil.copytree(trained / "export", folder)
    with zipfile.ZipFile(folder / "embed.pt2", "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("embed/data/weights/weight_999", b"\x00" * (32 << 20))
    assert (folder / "embed.pt2").stat().st_size < (2 << 20)
    rehash(folder)
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder), "--trust-export"), "embed.pt2",
                    "compressed archive entry")


def test_unsigned_torch_export_folder_is_refused_by_cli_and_api(trained, tmp_path):
    from fixate_rt import Simulator
    from fixate_rt.errors import InputError

    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(trained / "export")), "can run code",
                    "--trust-export")
    assert not (tmp_path / "o").exists()
    with pytest.raises(InputError, match="can run code"):
        Simulator(trained / "export", device="cpu")
    assert Simulator(trained / "export", device="cpu", trust_export=True).backend.kind.value == "export"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """An elliptic-curve key pair and a second public key (PEM), made with the cryptography package."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    root = tmp_path_factory.mktemp("keys")
    for name in ("a", "b"):
        key = ec.generate_private_key(ec.SECP256R1())
        (root / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
        (root / f"{name}.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return root


@pytest.fixture(scope="module")
def signed(trained, keys, tmp_path_factory):
    out = tmp_path_factory.mktemp("signed") / "export"
    result = runner.invoke(app, ["export", "--out", str(out), "--format", "export", "--model", "tiny-qwen3vl",
                                 "--prompts", str(trained / "train" / "prompts.safetensors"), "--sign-key",
                                 str(keys / "a.key")])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    assert (out / "model.sig").is_file()
    return out


def test_signed_export_loads_with_its_key_only(trained, signed, keys, tmp_path):
    result = _simulate(trained, tmp_path / "ok", "--model", str(signed), "--verify-key", str(keys / "a.pub"))
    assert result.exit_code == 0, result.output + (result.stderr or "")
    run = json.loads((tmp_path / "ok" / "run.json").read_text())
    assert run["export_trust"].startswith("signature verified")
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(signed), "--verify-key", str(keys / "b.pub")),
                    "signature check", "failed")


@pytest.mark.parametrize("change", ["edit", "add", "remove", "rehashed-pickle"])
def test_signed_folder_changed_after_signing_is_refused(trained, signed, keys, tmp_path, change):
    folder = tmp_path / "changed"
    shutil.copytree(signed, folder)
    marker = tmp_path / "payload-ran"
    if change == "edit":
        (folder / "tokenizer_config.json").write_text((folder / "tokenizer_config.json").read_text() + " ")
        rehash(folder)  # the manifest agrees: only the signature can tell
    elif change == "add":
        (folder / "extra.json").write_text("{}")
    elif change == "remove":
        (folder / "preprocessor_config.json").unlink()
    else:
        _rewrite_pt2(folder / "embed.pt2",
                     lambda name, data: pickle.dumps(OpensAFile(marker)) if "sample_inputs" in name else data)
        rehash(folder)
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder), "--verify-key", str(keys / "a.pub")),
                    "signature check", "failed")
    assert not marker.exists()


def test_verify_key_needs_a_signature(trained, keys, tmp_path):
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(trained / "onnx"), "--verify-key",
                              str(keys / "a.pub")), "not signed", "model.sig")


def test_onnx_external_data_is_verified(trained, tmp_path):
    """The ONNX exporter keeps the decoder's weights in decoder.onnx.data: changed weights are caught by the
    manifest's SHA-256 (they used to load and change the clicks)."""
    folder = tmp_path / "external"
    shutil.copytree(trained / "onnx", folder)
    assert "decoder.onnx.data" in json.loads((folder / "manifest.json").read_text())["files"]
    data = bytearray((folder / "decoder.onnx.data").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    (folder / "decoder.onnx.data").write_bytes(bytes(data))
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder)), "decoder.onnx.data", "SHA-256")


def test_onnx_external_data_must_be_listed(trained, tmp_path):
    """A graph whose weights live in a file the manifest does not list is refused before ONNX Runtime reads it."""
    import onnx

    folder = tmp_path / "external"
    shutil.copytree(trained / "onnx", folder)
    (folder / "decoder.onnx.data").rename(folder / "weights.bin")
    model = onnx.load(str(folder / "decoder.onnx"), load_external_data=False)
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "weights.bin"
    (folder / "decoder.onnx").write_bytes(model.SerializeToString())
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["decoder.onnx.data"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rehash(folder)
    from fixate_rt.backends.graph_runtime import GraphSession

    with pytest.raises(Exception, match="weights.bin.*not listed"):  # the session-level check, on its own
        GraphSession("onnx", folder / "decoder.onnx", [], [], listed=manifest["files"])
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder)), "weights.bin", "not listed")


def test_unlisted_file_in_export_folder_is_refused(trained, tmp_path):
    folder = tmp_path / "unlisted"
    shutil.copytree(trained / "onnx", folder)
    (folder / "added_tokens.json").write_text("{}")
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder)), "added_tokens.json", "not listed")


@pytest.mark.parametrize("field, value, needle", [
    ("hidden_size", 10**12, "hidden_size"), ("num_layers", 10**6, "num_layers"),
    ("image_size", [10**9, 619], "image_size"), ("probe_layers", [99], "probe_layers")])
def test_manifest_sizes_are_bounded(trained, tmp_path, field, value, needle):
    folder = tmp_path / "huge"
    shutil.copytree(trained / "onnx", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if field == "image_size":
        manifest["vision"]["sizes"][0]["image_size"] = value
    else:
        manifest[field] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    _one_line_error(_simulate(trained, tmp_path / "o", "--model", str(folder)), needle)
