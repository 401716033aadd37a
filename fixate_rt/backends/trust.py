"""Whether an export folder may be loaded: the trust model, enforced here and nowhere else.

An export folder is code until proven otherwise:

- ``onnx``: ONNX Runtime's loader runs no code from the file, so an ONNX export loads without trust once every
  file it reads (graphs, external data, tokenizer and processor files, the prompt bank) matches the manifest.
- ``export`` (torch.export ``.pt2``) and ``torchscript`` (``.pt``): their archives can carry code (TorchScript
  source, pickles, AOTInductor shared objects). They load only with explicit trust: ``trusted`` (``--trust-export``:
  the user vouches for the folder) or a valid signature over the whole folder by the key the user names
  (``verify_key``: ``--verify-key PUB``; signed with ``fixate-rt export --sign-key KEY``).
- A named key is always checked, whatever the format: a folder changed after signing (a file edited, added or
  removed) is refused.

The manifest's SHA-256 list cannot stand in for trust: whoever writes the folder writes the manifest. Signing
uses the OpenSSF ``model-signing`` library with an elliptic-curve key pair (works offline; no certificate
authority or transparency log is contacted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, UnavailableError, ValidationError

SIGNATURE = "model.sig"
CODE_FORMATS = ("export", "torchscript")
# Files that are not part of what a signature covers: the signature itself and an output lock (present only while
# `fixate-rt export` runs).
UNSIGNED = (SIGNATURE, ".fixate-rt.lock")


@dataclass(frozen=True)
class ExportTrust:
    """How far the user trusts an export folder: ``trusted`` (``--trust-export``) and/or a public key whose
    signature the folder must carry (``--verify-key``)."""

    trusted: bool = False
    verify_key: Path | None = None

    @classmethod
    def of(cls, trust: ExportTrust | bool | None, verify_key: Path | str | None = None) -> ExportTrust:
        """Accept the API's spellings: an `ExportTrust`, or the ``trust_export`` bool (+ ``verify_key``)."""
        if isinstance(trust, ExportTrust):
            return trust if verify_key is None else ExportTrust(trust.trusted, Path(verify_key))
        if trust is not None and not isinstance(trust, bool):
            raise ValidationError(f"trust_export must be True or False, got {trust!r}")
        return cls(bool(trust), Path(verify_key) if verify_key is not None else None)


def _model_signing():
    try:
        from model_signing import hashing, signing, verifying
    except ImportError as exc:
        raise UnavailableError(f"signing needs the OpenSSF model-signing library ({exc}); pip install "
                               "'fixate-rt[sign]'") from None
    return hashing, signing, verifying


def _hashing_config(hashing):
    # git metadata files count too: nothing in a signed folder escapes the signature except UNSIGNED
    return hashing.Config().set_ignored_paths(paths=list(UNSIGNED), ignore_git_paths=False)


def require_signing(key: Path, what: str) -> Path:
    """``key`` is a regular file and the signing library is installed (checked before any work)."""
    _model_signing()
    key = Path(key)
    if not key.is_file():
        raise InputError(f"{key}: {what} not found (or not a regular file)")
    return key


def sign_folder(folder: Path, private_key: Path) -> Path:
    """Sign every file of ``folder`` (but `UNSIGNED`) with an elliptic-curve private key (PEM); writes
    ``folder/model.sig`` and returns it."""
    hashing, signing, _ = _model_signing()
    key = require_signing(private_key, "signing key")
    folder = Path(folder)
    try:
        signing.Config().use_elliptic_key_signer(private_key=key).set_hashing_config(
            _hashing_config(hashing)).sign(folder, folder / SIGNATURE)
    except (ValueError, TypeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ValidationError(f"{key}: cannot sign with this key ({first}; an elliptic-curve private key in PEM "
                              "is expected, e.g. `openssl ecparam -name prime256v1 -genkey -noout -out key.pem`)") \
            from None
    return folder / SIGNATURE


def verify_folder(folder: Path, public_key: Path) -> None:
    """Refuse ``folder`` unless ``model.sig`` is a valid signature, by ``public_key``'s private key, over exactly
    the files the folder holds now."""
    hashing, _, verifying = _model_signing()
    key = require_signing(public_key, "verification key")
    folder = Path(folder)
    signature = folder / SIGNATURE
    if not signature.is_file():
        raise ValidationError(f"{folder}: not signed ({SIGNATURE} missing); sign it with `fixate-rt export "
                              "--sign-key KEY`, or drop --verify-key")
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=key).set_hashing_config(
            _hashing_config(hashing)).verify(folder, signature)
    except Exception as exc:  # noqa: BLE001 - the library raises ValueError and others for every mismatch
        raise ValidationError(f"{folder}: signature check against {key} failed ({_why(str(exc))}); the folder was "
                              "changed after signing or was signed with another key") from None


def _why(message: str) -> str:
    """The library's mismatch report, short: which file changed, appeared or went missing."""
    import re

    changed = re.search(r"Hash mismatch for '([^']+)'", message)
    if changed:
        return f"{changed[1]} changed"
    extra = re.search(r"Extra files found in model '[^']*': ([^\"\]]+)", message)
    if extra:
        return f"{extra[1].strip()} added"
    missing = re.search(r"Missing files in model '[^']*': ([^\"\]]+)", message)
    if missing:
        return f"{missing[1].strip()} missing"
    return " ".join(message.split())[:160] or "invalid signature"


def authorise(folder: Path, runtime: str, trust: ExportTrust) -> str:
    """Decide whether ``folder`` (in format ``runtime``) may be loaded; returns how it was authorised (recorded in
    run.json), else raises one line."""
    if trust.verify_key is not None:
        verify_folder(folder, trust.verify_key)
        return f"signature verified with {trust.verify_key}"
    if runtime not in CODE_FORMATS:
        return "onnx: its loader runs no code; every file verified against the manifest"
    if trust.trusted:
        return "trusted by the user (--trust-export)"
    kind = "a torch.export archive" if runtime == "export" else "a TorchScript archive"
    raise InputError(f"{folder}: {kind} can run code while loading; pass --verify-key PUB for a folder signed "
                     "with `fixate-rt export --sign-key KEY`, or --trust-export for a folder you made yourself "
                     "(or export to --format onnx, which loads without trust)")
