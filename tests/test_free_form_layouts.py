"""Free-form layouts: many slots, overlapping boxes, labels beyond A–O, per-slate context text."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.data.slates import MAX_SLOTS, Layout, default_labels, parse_layout
from fixate_rt.data.tables import Users, write_users
from fixate_rt.errors import ValidationError
from fixate_rt.run.layout import read_simulation

runner = CliRunner()


def test_default_labels_run_past_o_and_stop_at_the_maximum():
    labels = default_labels(MAX_SLOTS)
    assert labels[:3] == ("A", "B", "C") and labels[25:28] == ("Z", "a", "b") and len(set(labels)) == MAX_SLOTS
    with pytest.raises(ValidationError, match="at most 52"):
        default_labels(MAX_SLOTS + 1)


def test_every_default_label_and_digit_is_one_token_of_the_tiny_models(tiny):
    ids = tiny.label_token_ids(default_labels(MAX_SLOTS) + tuple("0123456789"))
    assert len(set(ids)) == MAX_SLOTS + 10


def test_a_two_token_label_is_refused(tiny):
    with pytest.raises(ValidationError, match="'10' is not a single known token"):
        tiny.label_token_ids(("9", "10"))


def test_too_many_slots_is_a_layout_error(tmp_path):
    slots = [{"box": [i, 0, i + 1, 1], "label": f"s{i}"} for i in range(MAX_SLOTS + 1)]
    with pytest.raises(ValidationError, match="53 slots, more than the supported 52"):
        parse_layout({"image_size": [100, 10], "slots": slots}, tmp_path / "x.json")


def test_pool_mode_auto_picks_overlap_only_for_overlapping_boxes():
    grid = Layout((100, 100), np.array([[0, 0, 50, 50], [50, 0, 100, 50]], np.float32), ("A", "B"))
    nested = Layout((100, 100), np.array([[0, 0, 100, 100], [10, 10, 40, 40]], np.float32), ("A", "B"))
    assert not grid.has_overlaps and grid.pool_mode("auto") == "exclusive"
    assert nested.has_overlaps and nested.pool_mode("auto") == "overlap"
    assert nested.pool_mode("area") == "area"


@pytest.fixture(scope="module")
def free_form_dir(tmp_path_factory):
    """One 30-slot slate (6 × 5 grid, labels A–Z then a–d) plus a nested box, with context text; two users."""
    root = tmp_path_factory.mktemp("free")
    slates = root / "slates"
    slates.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(slates / "page.png")
    boxes = [[c * 80, r * 50, c * 80 + 80, r * 50 + 50] for r in range(6) for c in range(5)]
    boxes.append([0, 0, 160, 100])  # overlaps the four top-left cells
    labels = default_labels(len(boxes))
    layout = {"image_size": [400, 300], "context": "Search query: blue kettle",
              "slots": [{"box": b, "label": lab} for b, lab in zip(boxes, labels)]}
    (slates / "page.json").write_text(json.dumps(layout))
    write_users(root / "users.parquet", Users(("u1", "u2"), ("", "")))
    return root


def test_simulate_on_a_free_form_layout(free_form_dir, tmp_path):
    result = runner.invoke(app, ["simulate", "--users", str(free_form_dir / "users.parquet"), "--images",
                                 str(free_form_dir / "slates"), "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = read_simulation(tmp_path)[0].to_pylist()
    assert len(rows) == 2
    for row in rows:
        assert len(row["p_click"]) == len(row["slot_relevance"]) == 31
        assert sum(row["p_click"]) == pytest.approx(1, abs=1e-5)
        # overlap pooling normalises over slots that may share tokens: still a distribution over slots
        assert sum(row["slot_relevance"]) == pytest.approx(1, abs=1e-5)
        assert row["click_label"] in default_labels(31)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["config"]["pool_mode"] == "auto"


def test_context_line_reaches_the_prompt(tiny):
    from fixate_rt import template

    text = template.render("p", ("A", "B"), "Search query: blue kettle")
    assert "User profile: p\nSearch query: blue kettle\n<image>" in text
    assert "Search query" not in template.render("p", ("A", "B"))
    with_ctx, _ = tiny.processor.encode("p", ("A", "B"), 4, "Search query: blue kettle")
    without, _ = tiny.processor.encode("p", ("A", "B"), 4)
    assert len(with_ctx) > len(without)
