"""The harness of the bad-input suite (tests/test_bad_inputs.py, tests/test_fuzz_inputs.py).

A `Workspace` is a private copy of good inputs (synthetic users, slates, sessions, a simulation, a prompt
bank, RecGaze records, one AdSERP trial) that a case breaks in its own way. `expect_clean_error` runs the
command and checks the contract every bad input must meet: exit code 2, exactly one line on stderr, naming
what the case says it must name, no traceback, and not one file created, changed or removed anywhere in the
workspace (which holds every input and every --out).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from fixate_rt.cli import app

runner = CliRunner()


def tree(root: Path) -> dict[str, str]:
    """relative path -> content digest (folders and special files by kind) of everything under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                out[rel] = "dir"
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "special"
    return out


@dataclass
class Workspace:
    root: Path

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def run(self, args: list) -> tuple[int, list[str], str]:
        result = runner.invoke(app, [str(a) for a in args])
        lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
        return result.exit_code, lines, result.output


def expect_clean_error(ws: Workspace, args: list, *needles: str) -> str:
    before = tree(ws.root)
    code, lines, output = ws.run(args)
    after = tree(ws.root)
    assert code == 2, f"exit {code} (expected 2): {output[-2000:]}"
    assert "Traceback" not in output, output[-2000:]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}: {lines[:5]}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    created = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (created or removed or changed), f"created {created[:5]}, removed {removed[:5]}, changed {changed[:5]}"
    return lines[0]


def make_workspace(base: Path, dest: Path) -> Workspace:
    """Copy the good inputs prepared once in ``base`` into ``dest``."""
    shutil.copytree(base, dest, symlinks=True)
    return Workspace(dest)


def write_good_inputs(root: Path) -> None:
    """Good inputs for every command, written once per test session (the simulation runs the tiny model)."""
    from PIL import Image

    from fixate_rt.data.synth import SynthConfig, write_synth
    from fixate_rt.prompts import SoftPromptBank

    write_synth(root / "data", SynthConfig(n_users=4, n_slates=3, seed=5))
    code = runner.invoke(app, ["simulate", "--users", str(root / "data" / "users.parquet"), "--images",
                               str(root / "data" / "slates"), "--out", str(root / "sim"), "--device", "cpu"]).exit_code
    assert code == 0
    record = json.loads((root / "sim" / "run.json").read_text())
    del record["config"]["images"]  # the cases pass --images themselves (a run.json naming it would stand in)
    (root / "sim" / "run.json").write_text(json.dumps(record))
    import pyarrow.parquet as pq

    from fixate_rt.backbones.tiny import ensure_model

    shutil.copytree(ensure_model("tiny-qwen3vl"), root / "model")  # a checkpoint folder cases may break
    users = pq.read_table(root / "data" / "users.parquet").column("user_id").to_pylist()
    SoftPromptBank.init(users, 2, 2, 64, backbone="tiny-qwen3vl").save(root / "bank.safetensors")
    # RecGaze records (FixATE's processed schema) with their lettered viewport images
    cols = (76, 427, 778, 1129, 1480)
    records = []
    for i, (uid, task) in enumerate((("KInIT_1", 2), ("UvA_3", 7))):
        boxes = [[x, 176, x + 342, 369] for x in cols]
        rec = {"user_id": uid, "task_id": task, "visit_index": 0, "split": "train",
               "image_path": f"{uid}/{uid}_{task}.jpg", "image_index_path": f"{uid}/{uid}_{task}.jpg",
               "label": i, "row": 0, "col": i, "n_candidates": 5, "bboxes": boxes, "clicked_movie_id": 1,
               "clicked_title": "x", "clicked_genres": "Drama", "clicked_carousel_genre": "Drama",
               "slot_fix": [100.0 * (i + 1)] + [0.0] * 14, "slot_fix_valid": [1] * 15,
               "slot_cursor": [0.0] * 15, "slot_cursor_valid": [1] * 15, "has_cursor": False, "history_text": ""}
        records.append(rec)
        path = root / "recgaze" / "images" / rec["image_index_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (1920, 600), (20, 20, 20)).save(path)
    (root / "recgaze" / "records.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (root / "recgaze" / "features.csv").write_text("User_ID,Top_genre,Preferred_genres\nKInIT_1,Drama,Crime\n")
    # one real AdSERP trial
    sample = Path(__file__).resolve().parents[1] / "data" / "adserp-sample"
    trial = sorted(p.stem for p in (sample / "fixation-data").glob("*.csv"))[0]
    for sub in sorted(p for p in sample.iterdir() if p.is_dir()):
        (root / "adserp" / sub.name).mkdir(parents=True, exist_ok=True)
        for f in sub.iterdir():
            if f.stem == trial or f.name.startswith(trial):
                shutil.copy(f, root / "adserp" / sub.name / f.name)
    for f in sample.iterdir():
        if f.is_file() and f.suffix == ".csv":
            shutil.copy(f, root / "adserp" / f.name)
