"""Checks that make loading an export folder safe: nothing in it may run code, nothing may point outside it.

- Every file the manifest names must resolve strictly inside the folder (no absolute path, no ``..``, no
  symlink leading out) and match the SHA-256 the manifest records for it.
- A torch.export ``.pt2`` archive may hold pickles (tensor subclasses stored with ``use_pickle``, custom objects,
  the legacy weight format, the sample inputs). `torch.export.load` unpickles some of them with
  ``weights_only=False``, which runs arbitrary code. `check_pt2_archive` refuses every pickled weight or
  constant and every custom object, and proves each remaining pickle loads under torch's ``weights_only``
  unpickler (which executes nothing) before `torch.export.load` is ever called.
- An ONNX graph may name external data files: they too must lie inside the folder.
- TorchScript cannot be checked this way (its archive carries code): it is loaded only when the user trusts
  the folder (``--trust-export``).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import InputError, ValidationError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def member_path(folder: Path, name: object, source: Path, field: str) -> Path:
    """``folder/name`` when ``name`` is a plain relative path that stays inside ``folder`` (symlinks resolved)."""
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name:
        raise ValidationError(f"{source}, field '{field}': {name!r} is not a relative file name")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise ValidationError(f"{source}, field '{field}': {name!r} leaves the export folder (absolute or '..')")
    path = folder / pure
    root = folder.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ValidationError(f"{source}, field '{field}': {name!r} is a link leading out of the export folder")
    return path


def verify_digest(path: Path, expected: object, source: Path, field: str) -> None:
    if not isinstance(expected, str) or len(expected) != 64:
        raise ValidationError(f"{source}, field '{field}': no SHA-256 recorded for {path.name} (re-export with this "
                              f"version of fixate-rt)")
    actual = sha256_file(path)
    if actual != expected:
        raise ValidationError(f"{path}: SHA-256 {actual[:12]}… does not match the manifest's {expected[:12]}… "
                              f"(the file was changed after export)")


def _refuse(path: Path, what: str) -> None:
    raise InputError(f"{path}: refused to load: {what}, which could run code while loading (only raw tensor "
                     f"payloads are accepted; re-export with `fixate-rt export --format export`)")


def check_pt2_archive(path: Path) -> None:
    """Raise `InputError` unless loading this ``.pt2`` with `torch.export.load` cannot execute code."""
    import torch

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path}: torch.export cannot load this graph (not a .pt2 archive: {exc})") from None
    with archive:
        names = archive.namelist()
        for name in names:
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts:
                _refuse(path, f"archive entry {name!r} with an absolute or '..' path")
        for name in names:
            if name.endswith("_weights_config.json") or name.endswith("_constants_config.json"):
                try:
                    config = json.loads(archive.read(name))["config"]
                except (ValueError, KeyError, TypeError):
                    raise InputError(f"{path}: torch.export cannot load this graph (entry {name!r} is not a "
                                     f"payload config)") from None
                for fqn, meta in config.items():
                    if not isinstance(meta, dict) or meta.get("use_pickle", True):
                        _refuse(path, f"tensor '{fqn}' stored as a pickle")
                    if name.endswith("_constants_config.json") and not str(meta.get("path_name", "")).startswith(
                            "tensor_"):
                        _refuse(path, f"constant '{fqn}' stored as a custom object")
            elif PurePosixPath(name).parent.name in ("weights", "constants") and name.endswith(".pt"):
                _refuse(path, f"legacy weight file {name!r}")
        for name in names:
            data = archive.read(name)
            if not (name.endswith(".pt") or data[:1] == b"\x80"):
                continue
            try:  # torch's weights-only unpickler accepts tensors and containers and executes nothing else
                torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
            except Exception as exc:  # noqa: BLE001 - any failure means the entry is not plain tensors
                first = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
                _refuse(path, f"entry {name!r}, a pickle that is not plain tensors ({first})")


def check_onnx_external_data(path: Path, folder: Path) -> None:
    """Every external-data file an ONNX graph names must lie inside the export folder."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for corrupt files
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"{path}: onnx-runtime cannot load this graph ({first})") from None
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            member_path(path.parent, location, path, f"external data of '{tensor.name}'")
