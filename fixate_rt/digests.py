"""SHA-256 digests of a run's inputs and model, recorded in run.json and compared on ``--resume``."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .data.slates import Slate
from .data.tables import Users
from .io import sha256_file


def _combine(parts: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(parts):
        digest.update(f"{name}\x1f{value}\n".encode())
    return digest.hexdigest()


def pairs_digest(pairs: list[tuple[str, str]]) -> str:
    """The (user, slate) pairs in run order."""
    return hashlib.sha256("\n".join(f"{u}\x1f{s}" for u, s in pairs).encode()).hexdigest()


def slates_digest(slates: dict[str, Slate]) -> str:
    """Every slate's image bytes and resolved layout (boxes, labels, items, context)."""
    import json

    return _combine([(sid, sha256_file(s.image_path) + hashlib.sha256(
        json.dumps(s.layout.to_json(), sort_keys=True).encode()).hexdigest()) for sid, s in slates.items()])


def users_digest(users: Users) -> str:
    """Every user id with its profile text."""
    return _combine([(uid, hashlib.sha256(profile.encode()).hexdigest()) for uid, profile in zip(users.ids, users.profiles)])


def model_digest(folder: Path) -> str:
    """An export folder: its manifest (which records every file's SHA-256). A checkpoint folder (an embedded
    model's included, resolved by the caller: `ModelInfo.folder`): its config and weight files."""
    folder = Path(folder)
    if (folder / "manifest.json").is_file():
        return sha256_file(folder / "manifest.json")
    files = [p for p in sorted(folder.iterdir()) if p.suffix in (".json", ".safetensors") and p.is_file()]
    return _combine([(p.name, sha256_file(p)) for p in files])


def run_digests(model_folder: Path, users: Users, slates: dict[str, Slate], pairs: list[tuple[str, str]],
                prompts: Path | None) -> dict[str, str | None]:
    """SHA-256 of every input that shapes the rows, and of the model (run.json's ``digests_sha256``; both
    engines' resume fingerprints)."""
    return {"users": users_digest(users), "slates": slates_digest(slates), "pairs": pairs_digest(pairs),
            "prompts": sha256_file(Path(prompts)) if prompts else None, "model": model_digest(model_folder)}
