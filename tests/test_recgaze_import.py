"""`fixate-rt import-recgaze` on a small hand-written fixture in FixATE's record schema (docs/method.md §1.4)."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.data.slates import read_slates
from fixate_rt.data.tables import read_sessions, read_users

runner = CliRunner()
COLS = (76, 427, 778, 1129, 1480)


def _record(uid, task, visit, split, n_rows, label, fix, cur=None):
    boxes = [[x, 176 + 340 * r, x + 342, 176 + 340 * r + 193] for r in range(n_rows) for x in COLS]
    return {"user_id": uid, "task_id": task, "visit_index": visit, "split": split,
            "image_path": f"{uid}/{uid}_{task}_{visit}.jpg", "image_index_path": f"{uid}/{uid}_{task}_{visit}.jpg",
            "label": label, "row": label // 5, "col": label % 5, "n_candidates": 5 * n_rows, "bboxes": boxes,
            "clicked_movie_id": 1, "clicked_title": "x", "clicked_genres": "Drama", "clicked_carousel_genre": "Drama",
            "slot_fix": fix, "slot_fix_valid": [1] * 15, "slot_cursor": cur if cur is not None else [0.0] * 15,
            "slot_cursor_valid": [1] * 15, "has_cursor": cur is not None, "history_text": ""}


@pytest.fixture
def fixture(tmp_path):
    root = tmp_path / "image_index"
    records = [
        _record("KInIT_1", 2, 0, "train", 3, 7, [0, 120, 0, 0, 0, 0, 300, 900, 0, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 1500, 0, 0, 0, 0, 0, 0, 0]),
        _record("KInIT_1", 4, 1, "test", 2, 3, [50, 0, 0, 600, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        _record("UvA_3", 7, 0, "val", 1, 0, [400, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ]
    for rec in records:
        path = root / rec["image_index_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (1920, 1080), (16, 16, 16)).save(path, quality=85)
    (tmp_path / "fixate_dataset.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (tmp_path / "user_features.csv").write_text("User_ID,Top_genre,Preferred_genres\nKInIT_1,Drama,\"Crime, Horror\"\n")
    return tmp_path


def test_import_recgaze(fixture):
    out = fixture / "out"
    result = runner.invoke(app, ["import-recgaze", str(fixture / "fixate_dataset.jsonl"), "--images-root",
                                 str(fixture / "image_index"), "--out", str(out), "--user-features",
                                 str(fixture / "user_features.csv")])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    users = read_users(out / "users.parquet")
    assert users.ids == ("KInIT_1", "UvA_3")
    assert users.profiles == ("Top_genre: Drama, Preferred_genres: Crime, Horror", "")
    slates = read_slates(out / "slates")
    first = slates["KInIT_1_2_0"].layout
    assert first.image_size == (1100, 619) and first.n_slots == 15 and first.labels[7] == "H"
    np.testing.assert_allclose(first.boxes[0], np.array([76, 176, 418, 369]) * 1100 / 1920, rtol=1e-5)
    assert slates["UvA_3_7_0"].layout.n_slots == 5
    sessions = read_sessions(out / "sessions.parquet")
    assert sessions.splits == ("train", "test", "val") and sessions.clicked_slot.tolist() == [7, 3, 0]
    assert sessions.fixation_ms[1].tolist() == [50, 0, 0, 600, 0, 0, 0, 0, 0, 0]  # truncated to n_candidates
    assert sessions.cursor_ms[0][7] == 1500


def test_import_recgaze_bad_label_names_line_and_field(fixture):
    lines = (fixture / "fixate_dataset.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    rec["label"] = 12  # only 10 candidates
    lines[1] = json.dumps(rec)
    (fixture / "fixate_dataset.jsonl").write_text("\n".join(lines))
    result = runner.invoke(app, ["import-recgaze", str(fixture / "fixate_dataset.jsonl"), "--images-root",
                                 str(fixture / "image_index"), "--out", str(fixture / "out")])
    assert result.exit_code == 2
    assert "line 2, field 'label': 12 is outside 0..9" in result.stderr
    assert not (fixture / "out" / "sessions.parquet").exists()


def test_import_recgaze_missing_image(fixture):
    (fixture / "image_index" / "UvA_3" / "UvA_3_7_0.jpg").unlink()
    result = runner.invoke(app, ["import-recgaze", str(fixture / "fixate_dataset.jsonl"), "--images-root",
                                 str(fixture / "image_index"), "--out", str(fixture / "out")])
    assert result.exit_code == 2 and "UvA_3_7_0.jpg" in result.stderr
    assert not (fixture / "out").exists()  # checked before anything was written


def test_score_baselines_on_an_imported_recgaze_set(fixture):
    """Slates of 15, 10 and 5 posters: the user prior learnt on a 15-slot train slate scores a 10-slot test slate
    (renormalised over its slots), and a user with no train session falls back to the population prior, named."""
    from fixate_rt import metrics as M

    out = fixture / "out"
    result = runner.invoke(app, ["import-recgaze", str(fixture / "fixate_dataset.jsonl"), "--images-root",
                                 str(fixture / "image_index"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["simulate", "--users", str(out / "users.parquet"), "--images", str(out / "slates"),
                                 "--out", str(fixture / "sim"), "--model", "tiny-qwen3vl", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for split in ("test", "val"):
        result = runner.invoke(app, ["score", "--sim", str(fixture / "sim"), "--sessions", str(out / "sessions.parquet"),
                                     "--out", str(fixture / split), "--split", split,
                                     "--baselines", "uniform,population,user"])
        assert result.exit_code == 0, result.output
    test = json.loads((fixture / "test" / "metrics.json").read_text())["baselines"]["models"]
    assert test["user"]["fallback_to_population"] == [] and test["population"]["fitted_on"]["sessions"] == 1
    # The one train session (KInIT_1, 15 slots): fixation on slots 1, 6, 7, click 7; the test slate has 10 slots.
    train_fix = np.array([0, 120, 0, 0, 0, 0, 300, 900, 0, 0, 0, 0, 0, 0, 0], float)
    gaze = (M.gaze_target(train_fix)[:10] + 0.1) / 2
    click = (np.eye(15)[7][:10] + 0.1) / 2
    expected = M.sample_metrics(gaze / gaze.sum(), M.gaze_target(np.array([50, 0, 0, 600, 0, 0, 0, 0, 0, 0], float)),
                                click / click.sum(), 3)
    assert test["user"]["micro"]["kl"] == pytest.approx(expected["kl"], rel=1e-6)
    assert test["user"]["micro"]["logloss"] == pytest.approx(expected["logloss"], rel=1e-6)
    val = json.loads((fixture / "val" / "metrics.json").read_text())["baselines"]["models"]
    assert val["user"]["fallback_to_population"] == ["UvA_3"]
    assert val["user"]["micro"] == val["population"]["micro"]
