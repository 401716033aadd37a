"""Checks that make opening an export folder's files safe: nothing may point outside the folder, nothing unlisted
or changed is read, and a ``.pt2`` archive is inspected with the reader that loads it.

- Every file the manifest names must resolve strictly inside the folder (no absolute path, no ``..``, no
  symlink leading out) and match the SHA-256 the manifest records; a file the manifest does not list is refused.
  (This catches accidents and tampering by a third party; whoever writes the folder also writes the manifest,
  so the manifest alone never makes a format that can carry code safe: `fixate_rt.backends.trust` decides that.)
- An ONNX graph's external-data files must lie inside the folder and be listed (hence verified) too.
- A ``.pt2`` archive is read with ``torch._C.PyTorchFileReader``, the reader `torch.export.load` uses, and must
  hold exactly the entries a plain exported program has: its JSON descriptions and raw tensor payloads. Duplicate
  entry names (two zip readers may pick different copies), native libraries (an AOTInductor ``.so`` is dlopened
  on load), pickles of any kind (sample inputs included: fixate-rt writes none), compressed entries and
  oversized entries are refused outright.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import InputError, ValidationError
from ..io import sha256_file
from ..limits import MAX_ARCHIVE_ENTRIES, MAX_ARCHIVE_ENTRY_BYTES


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
    raise InputError(f"{path}: refused to load: {what} (a fixate-rt export holds only JSON and raw tensors; "
                     f"re-export with `fixate-rt export --format export`)")


# The fixed entries of a torch.export archive (names as PyTorchFileReader gives them, without the root folder).
_FIXED = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_MODEL = re.compile(r"models/[A-Za-z0-9_.-]+\.json")
_PAYLOAD_CONFIG = re.compile(r"data/(weights|constants)/[A-Za-z0-9_.-]+_(weights|constants)_config\.json")
_SAMPLE_INPUTS = re.compile(r"data/sample_inputs/[A-Za-z0-9_.-]+\.pt")
_NATIVE_MAGIC = (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")  # ELF, Mach-O


def _zip_names(path: Path) -> list[str]:
    """Every central-directory name, duplicates kept; all entries must be stored (uncompressed), as torch writes."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"{path}: torch.export cannot load this graph (not a .pt2 archive: {exc})") from None
    if len(infos) > MAX_ARCHIVE_ENTRIES:
        _refuse(path, f"{len(infos)} archive entries (at most {MAX_ARCHIVE_ENTRIES})")
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            _refuse(path, f"compressed archive entry {info.filename!r}")
        if info.file_size > MAX_ARCHIVE_ENTRY_BYTES:
            _refuse(path, f"archive entry {info.filename!r} of {info.file_size} bytes (at most {MAX_ARCHIVE_ENTRY_BYTES})")
    return [info.filename for info in infos]


def _payload_names(reader, name: str, path: Path) -> set[str]:
    """The raw tensor files a weights/constants config names; every entry must be a plain tensor payload."""
    folder = name.rsplit("/", 1)[0]
    try:
        config = json.loads(reader.get_record(name))["config"]
        if not isinstance(config, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, RuntimeError):
        raise InputError(f"{path}: torch.export cannot load this graph (entry {name!r} is not a payload "
                         f"config)") from None
    names = set()
    for fqn, meta in config.items():
        if not isinstance(meta, dict) or meta.get("use_pickle", True):
            _refuse(path, f"tensor '{fqn}' stored as a pickle")
        payload = str(meta.get("path_name", ""))
        if not re.fullmatch(r"(weight|tensor)_[0-9]+", payload):
            _refuse(path, f"'{fqn}' stored as {payload!r}, not a raw tensor (custom objects carry code)")
        names.add(f"{folder}/{payload}")
    return names


def check_pt2_archive(path: Path) -> None:
    """Raise `InputError` unless this ``.pt2`` holds only what a plain exported program needs (see module doc)."""
    import torch

    zip_names = _zip_names(path)
    if len(set(zip_names)) != len(zip_names):
        dup = next(n for n in zip_names if zip_names.count(n) > 1)
        _refuse(path, f"duplicate archive entry {dup!r} (zip readers disagree on which copy counts)")
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        records = set(reader.get_all_records())
    except RuntimeError as exc:
        first = (str(exc).splitlines() or ["unreadable"])[0][:160]
        raise InputError(f"{path}: torch.export cannot load this graph ({first})") from None
    stripped = {name.split("/", 1)[1] if "/" in name else name for name in zip_names}
    if stripped != records or len(records) != len(zip_names):
        _refuse(path, "an archive whose entries read differently through zipfile and through torch's reader")
    payloads: set[str] = set()
    for name in records:
        if _PAYLOAD_CONFIG.fullmatch(name):
            payloads |= _payload_names(reader, name, path)
    for name in sorted(records):
        lowered = name.lower()
        if lowered.endswith((".so", ".dll", ".dylib", ".pyd", ".cubin", ".hsaco", ".o")) or "aotinductor" in lowered:
            _refuse(path, f"native library entry {name!r} (torch.export.load would load and run it)")
        if name in _FIXED or _MODEL.fullmatch(name) or _PAYLOAD_CONFIG.fullmatch(name):
            data = reader.get_record(name)
            if data[:4] in _NATIVE_MAGIC or data[:2] == b"MZ":  # ... or a PE (Windows) header
                _refuse(path, f"native code in entry {name!r}")
            continue
        if name in payloads:  # raw tensor bytes: read as numbers, never executed or unpickled
            continue
        if _SAMPLE_INPUTS.fullmatch(name):
            if reader.get_record_size(name) != 0:
                _refuse(path, f"pickled sample inputs {name!r}")
            continue
        _refuse(path, f"unexpected archive entry {name!r}")


def check_onnx_external_data(path: Path, folder: Path, listed: dict):
    """Every external-data file an ONNX graph names must lie inside the export folder and be listed in the
    manifest's ``files`` (so its SHA-256 was verified). Returns the graph it read (an ``onnx.ModelProto`` without
    its external weights), so a caller that rewrites the graph reads the file once."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for corrupt files
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(f"{path}: onnx-runtime cannot load this graph ({first})") from None
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            member = member_path(path.parent, location, path, f"external data of '{tensor.name}'")
            name = member.resolve().relative_to(Path(folder).resolve()).as_posix()
            if name not in listed:
                raise ValidationError(f"{path}: external data file {location!r} of '{tensor.name}' is not listed "
                                      f"(with its SHA-256) in the manifest; re-export with this version of fixate-rt")
    return model
