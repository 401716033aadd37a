import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixate_rt.data.layout import recgaze_layout
from fixate_rt.data.slates import parse_layout, read_slates
from fixate_rt.data.tables import Sessions, Users, read_sessions, read_users, write_sessions, write_users
from fixate_rt.errors import InputError, ValidationError


def test_users_round_trip(tmp_path):
    users = Users(("a", "b"), ("Top_genre: Drama", ""))
    write_users(tmp_path / "u.parquet", users)
    assert read_users(tmp_path / "u.parquet") == users


def test_users_without_profile_column_get_empty_profiles(tmp_path):
    pq.write_table(pa.table({"user_id": ["x", "y"]}), tmp_path / "u.parquet")
    assert read_users(tmp_path / "u.parquet").profiles == ("", "")


@pytest.mark.parametrize("table, message", [
    (pa.table({"uid": ["a"]}), "field 'user_id': required column is missing"),
    (pa.table({"user_id": [1, 2]}), "field 'user_id': expected string"),
    (pa.table({"user_id": ["a", "b", "a"]}), "row 2, field 'user_id': duplicate user id 'a'"),
    (pa.table({"user_id": pa.array([], pa.string())}), "users file has no rows"),
    (pa.table({"user_id": ["a", None]}), "row 1, field 'user_id': value is null"),
])
def test_users_validation_names_the_field(tmp_path, table, message):
    pq.write_table(table, tmp_path / "u.parquet")
    with pytest.raises(ValidationError, match=message):
        read_users(tmp_path / "u.parquet")


def test_corrupt_parquet_is_an_input_error(tmp_path):
    (tmp_path / "u.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_users(tmp_path / "u.parquet")


def _sessions(**over):
    base = dict(user_ids=("a", "b"), slate_ids=("s", "s"), splits=("train", "test"),
                fixation_ms=(np.array([1.0, 0.0, 2.0]), np.array([0.0, 5.0, 0.0])),
                cursor_ms=(np.array([0.0, 1.0, 0.0]), np.array([1.0, 1.0, 1.0])), clicked_slot=np.array([2, 1]))
    base.update(over)
    return Sessions(**base)


def test_sessions_round_trip(tmp_path):
    write_sessions(tmp_path / "s.parquet", _sessions())
    back = read_sessions(tmp_path / "s.parquet")
    assert back.user_ids == ("a", "b") and back.splits == ("train", "test")
    np.testing.assert_allclose(back.fixation_ms[1], [0, 5, 0])
    assert back.clicked_slot.tolist() == [2, 1]


@pytest.mark.parametrize("over, message", [
    (dict(fixation_ms=(np.array([1.0, np.nan, 2.0]), np.array([0.0, 5.0, 0.0]))), r"row 0, field 'fixation_ms': NaN"),
    (dict(fixation_ms=(np.array([1.0, 1.0, 2.0]), np.array([0.0, -5.0, 0.0]))), r"row 1, field 'fixation_ms': negative"),
    (dict(clicked_slot=np.array([2, 3])), r"row 1, field 'clicked_slot': 3 is outside 0..2"),
    (dict(splits=("train", "dev")), r"row 1, field 'split': 'dev'"),
    (dict(slate_ids=("s", "s"), user_ids=("a", "a")), r"row 1: duplicate \(user_id, slate_id\)"),
])
def test_sessions_validation(tmp_path, over, message):
    write_sessions(tmp_path / "s.parquet", _sessions(**over))
    with pytest.raises(ValidationError, match=message):
        read_sessions(tmp_path / "s.parquet")


def test_recgaze_layout_geometry():
    layout = recgaze_layout()
    assert layout.image_size == (1100, 619) and layout.labels[0] == "A" and layout.labels[-1] == "O"
    b = layout.boxes
    assert b.shape == (15, 4)
    np.testing.assert_allclose(b[0], np.array([76, 176, 418, 369]) * 1100 / 1920, rtol=1e-6)
    assert (b[:, 2] <= 1100).all() and (b[:, 3] <= 619).all()
    assert (np.diff(b[:5, 0]) > 0).all(), "reading order: left to right within a row"


@pytest.mark.parametrize("payload, message", [
    ({"image_size": [100, 50], "slots": [{"box": [0, 0, 120, 10], "label": "A"}]}, "slot 0, field 'box'.*outside"),
    ({"image_size": [100, 50], "slots": [{"box": [5, 5, 5, 10], "label": "A"}]}, "slot 0, field 'box': empty box"),
    ({"image_size": [100, 50], "slots": [{"box": [0, 0, 9, 9], "label": "A"}, {"box": [1, 1, 5, 5], "label": "A"}]},
     "slot 1, field 'label': duplicate"),
    ({"image_size": [100], "slots": []}, "field 'image_size'"),
    ({"image_size": [100, 50], "slots": []}, "field 'slots'"),
])
def test_layout_validation(tmp_path, payload, message):
    with pytest.raises(ValidationError, match=message):
        parse_layout(payload, tmp_path / "layout.json")


def test_slates_per_slate_layout_takes_precedence(synth_dir, tmp_path):
    import shutil

    folder = tmp_path / "slates"
    shutil.copytree(synth_dir / "slates", folder)
    own = {"image_size": [1100, 619], "slots": [{"box": [0, 0, 100, 100], "label": "A"},
                                                {"box": [100, 0, 200, 100], "label": "B"}]}
    (folder / "s001.json").write_text(json.dumps(own))
    slates = read_slates(folder)
    assert slates["s001"].layout.labels == ("A", "B")
    assert slates["s000"].layout.n_slots == 15
