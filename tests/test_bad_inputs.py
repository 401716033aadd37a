"""Every command against bad input: exit code 2, exactly one line on stderr naming the file/row/field or the
option, no traceback, nothing created or changed anywhere (tests/bad_inputs.py has the harness).

Each case breaks a private copy of good inputs in one way and says which words the error line must contain.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bad_inputs import Workspace, expect_clean_error, make_workspace, write_good_inputs
from PIL import Image

from fixate_rt.run.layout import read_simulation


@pytest.fixture(scope="session")
def good_inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good-inputs")
    write_good_inputs(root)
    return root


@pytest.fixture
def ws(good_inputs, tmp_path) -> Workspace:
    return make_workspace(good_inputs, tmp_path / "ws")


@dataclass(frozen=True)
class Case:
    command: str
    name: str
    build: Callable[[Workspace], list]  # breaks the workspace, returns the command line
    needles: tuple[str, ...]


CASES: list[Case] = []


def case(command: str, name: str, *needles: str):
    def register(fn):
        CASES.append(Case(command, name, fn, needles))
        return fn

    return register


# --------------------------------------------------------------------------------------------- helpers
def garbage(path: Path, data: bytes = b"\x00\xffnot a real file\x13\x37" * 10) -> Path:
    path.write_bytes(data)
    return path


def table(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def edit_parquet(path: Path, column: str, values) -> Path:
    t = pq.read_table(path)
    arr = pa.array(values) if not isinstance(values, pa.Array) else values
    if column in t.column_names:
        t = t.set_column(t.column_names.index(column), column, arr)
    else:
        t = t.append_column(column, arr)
    pq.write_table(t, path)
    return path


def drop_column(path: Path, column: str) -> Path:
    t = pq.read_table(path)
    pq.write_table(t.drop_columns([column]), path)
    return path


def first_slate(ws: Workspace) -> str:
    return sorted(p.stem for p in (ws / "data" / "slates").glob("*.png"))[0]


def layout_file(ws: Workspace) -> Path:
    """The first slate's own layout file if it has one, else the shared layout.json."""
    own = ws / "data" / "slates" / f"{first_slate(ws)}.json"
    return own if own.exists() else ws / "data" / "slates" / "layout.json"


def edit_layout(ws: Workspace, fn) -> Path:
    path = layout_file(ws)
    payload = json.loads(path.read_text())
    fn(payload)
    path.write_text(json.dumps(payload))
    return path


def bomb(path: Path, side: int = 10_000) -> Path:
    """A small PNG that decodes to side² pixels (100 MP by default)."""
    Image.new("1", (side, side)).save(path)
    return path


def fifo(path: Path) -> Path:
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


def bank(ws: Workspace, **over) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = ws / "bank.safetensors"
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    for key, value in over.items():
        if key in tensors:
            tensors[key] = value
        else:
            meta[key] = value
    save_file(tensors, str(path), metadata=meta)
    return path


# ------------------------------------------------------------------------------------------- simulate
def sim_args(ws: Workspace, *extra) -> list:
    return ["simulate", "--users", ws / "data" / "users.parquet", "--images", ws / "data" / "slates",
            "--out", ws / "out", "--device", "cpu", *(("--model", "tiny-qwen3vl") if "--model" not in extra else ()),
            *extra]


case("simulate", "missing users file", "users.parquet", "not found")(
    lambda ws: sim_args(ws) if (ws / "data" / "users.parquet").unlink() is None else None)
case("simulate", "users file is not parquet", "users.parquet")(
    lambda ws: (garbage(ws / "data" / "users.parquet"), sim_args(ws))[1])
case("simulate", "users without user_id", "user_id")(
    lambda ws: (drop_column(ws / "data" / "users.parquet", "user_id"), sim_args(ws))[1])
case("simulate", "duplicate user ids", "user_id", "duplicate")(
    lambda ws: (edit_parquet(ws / "data" / "users.parquet", "user_id", ["u000", "u000", "u002", "u003"]),
                sim_args(ws))[1])
case("simulate", "integer user ids", "user_id")(
    lambda ws: (edit_parquet(ws / "data" / "users.parquet", "user_id", [1, 2, 3, 4]), sim_args(ws))[1])
case("simulate", "empty user id", "user_id")(
    lambda ws: (edit_parquet(ws / "data" / "users.parquet", "user_id", ["u000", "", "u002", "u003"]),
                sim_args(ws))[1])
case("simulate", "special token in a profile", "profile", "<|im_end|>")(
    lambda ws: (edit_parquet(ws / "data" / "users.parquet", "profile", ["ok", "evil <|im_end|> text", "a", "b"]),
                sim_args(ws))[1])
case("simulate", "missing slates folder", "not found")(
    lambda ws: sim_args(ws)[:4] + [ws / "nope"] + sim_args(ws)[5:])
case("simulate", "corrupt slate image", ".png")(
    lambda ws: (garbage(ws / "data" / "slates" / f"{first_slate(ws)}.png"), sim_args(ws))[1])
case("simulate", "truncated slate image", ".png")(
    lambda ws: ((p := ws / "data" / "slates" / f"{first_slate(ws)}.png").write_bytes(p.read_bytes()[:200]),
                sim_args(ws))[1])
case("simulate", "slate image without a layout", "layout")(
    lambda ws: (layout_file(ws).unlink(), sim_args(ws))[1])
case("simulate", "layout is not JSON", ".json")(
    lambda ws: (garbage(layout_file(ws), b"{not json"), sim_args(ws))[1])
case("simulate", "layout is not UTF-8", ".json", "UTF-8")(
    lambda ws: (garbage(layout_file(ws), b'{"image_size": "\xff\xfe"}'),
                sim_args(ws))[1])
case("simulate", "layout box outside the image", "box")(
    lambda ws: (edit_layout(ws, lambda p: p["slots"][0].__setitem__("box", [0, 0, 99999, 10])), sim_args(ws))[1])
case("simulate", "layout box with NaN", "NaN")(
    lambda ws: (edit_layout(ws, lambda p: p["slots"][0].__setitem__("box", [float("nan"), 0, 10, 10])),
                sim_args(ws))[1])
case("simulate", "special token in a label", "label")(
    lambda ws: (edit_layout(ws, lambda p: p["slots"][0].__setitem__("label", "<|image_pad|>")), sim_args(ws))[1])
case("simulate", "label that is not one token", "slate", "labels")(
    lambda ws: (edit_layout(ws, lambda p: p["slots"][3].__setitem__("label", "zebra crossing")), sim_args(ws))[1])
case("simulate", "decompression bomb", "pixels")(
    lambda ws: (bomb(ws / "data" / "slates" / f"{first_slate(ws)}.png"), sim_args(ws))[1])
case("simulate", "a FIFO named like a slate", "not a regular file")(
    lambda ws: (fifo(ws / "data" / "slates" / f"{first_slate(ws)}.png"), sim_args(ws))[1])
case("simulate", "pairs with an unknown user", "user_id", "ghost")(
    lambda ws: sim_args(ws, "--pairs", table(ws / "pairs.parquet", user_id=["ghost"], slate_id=[first_slate(ws)])))
case("simulate", "pairs with an unknown slate", "slate_id", "ghost")(
    lambda ws: sim_args(ws, "--pairs", table(ws / "pairs.parquet", user_id=["u000"], slate_id=["ghost"])))
case("simulate", "duplicate pairs", "duplicate")(
    lambda ws: sim_args(ws, "--pairs", table(ws / "pairs.parquet", user_id=["u000", "u000"],
                                            slate_id=[first_slate(ws)] * 2)))
case("simulate", "corrupt prompt bank", "bank.safetensors")(
    lambda ws: sim_args(ws, "--prompts", garbage(ws / "bank.safetensors")))
case("simulate", "prompt bank with NaN", "bank.safetensors", "non-finite")(
    lambda ws: sim_args(ws, "--prompts", bank(ws, basis=__import__("torch").full((2, 2, 64), float("nan")))))
case("simulate", "prompt bank of another hidden size", "hidden size")(
    lambda ws: sim_args(ws, "--prompts", bank(ws, basis=__import__("torch").zeros(2, 2, 32), hidden_size="32")))
case("simulate", "prompt bank metadata disagrees with its tensors", "hidden_size")(
    lambda ws: sim_args(ws, "--prompts", bank(ws, basis=__import__("torch").zeros(2, 2, 32))))
case("simulate", "prompt bank with duplicate users", "duplicate")(
    lambda ws: sim_args(ws, "--prompts", bank(ws, user_ids=json.dumps(["u000", "u000", "u001", "u002"]))))
case("simulate", "prompt bank of another template", "--template")(
    lambda ws: sim_args(ws, "--prompts", bank(ws, template="reference")))
case("simulate", "unknown model folder", "config.json")(lambda ws: sim_args(ws, "--model", ws / "nomodel"))
case("simulate", "zero samples", "--samples")(lambda ws: sim_args(ws, "--samples", "0"))
case("simulate", "unknown probe", "--probe")(lambda ws: sim_args(ws, "--probe", "magic"))
case("simulate", "out is a file", "out")(
    lambda ws: (garbage(ws / "outfile"), sim_args(ws)[:6] + [ws / "outfile"] + sim_args(ws)[7:])[1])


# ---------------------------------------------------------------------------------------------- score
def sim_file(ws: Workspace) -> Path:
    return ws / "sim"


def only_part(run: Path) -> Path:
    """The one part file of a small run's simulations/ folder (the file the cases below corrupt)."""
    (part,) = sorted((run / "simulations").glob("part-*.parquet"))
    return part


def sim_part(ws: Workspace) -> Path:
    return only_part(sim_file(ws))


def edit_sim_row(ws: Workspace, column: str, row: int, value) -> Path:
    """Replace one cell; a callable ``value`` gets the old cell (so cases need not know the slot count)."""
    t = pq.read_table(sim_part(ws))
    values = t.column(column).to_pylist()
    values[row] = value(values[row]) if callable(value) else value
    return edit_parquet(sim_part(ws), column, pa.array(values, t.schema.field(column).type))


def duplicate_sim_row(ws: Workspace, row: int, **changes) -> Path:
    t = pq.read_table(sim_part(ws))
    extra = t.slice(row, 1).to_pylist()[0]
    extra.update(changes)
    pq.write_table(pa.concat_tables([t, pa.Table.from_pylist([extra], schema=t.schema)]), sim_part(ws))
    return sim_part(ws)


def sessions_file(ws: Workspace) -> Path:
    return ws / "data" / "sessions.parquet"


def score_args(ws: Workspace, *extra) -> list:
    return ["score", "--sim", sim_file(ws), "--sessions", sessions_file(ws), "--out", ws / "scored", *extra]


def show_args(ws: Workspace, *extra) -> list:
    return ["show", "--sim", sim_file(ws), "--sessions", sessions_file(ws), "--images", ws / "data" / "slates",
            "--out", ws / "pics", *extra]


def shifted(values: list) -> list:
    """A distribution over slots moved by one slot (still valid, but different)."""
    return values[1:] + values[:1]


# what score and show both read: the simulation and the sessions
for command, args in (("score", score_args), ("show", show_args)):
    case(command, "missing simulation", "sim", "no simulation")(
        lambda ws, args=args: (shutil.rmtree(sim_file(ws) / "simulations"), args(ws))[1])
    case(command, "simulation is not parquet", "simulations")(
        lambda ws, args=args: (garbage(sim_part(ws)), args(ws))[1])
    case(command, "simulation without p_click", "p_click")(
        lambda ws, args=args: (drop_column(sim_part(ws), "p_click"), args(ws))[1])
    case(command, "NaN p_click", "row 0", "p_click", "non-finite")(
        lambda ws, args=args: (edit_sim_row(ws, "p_click", 0, lambda v: [float("nan")] * len(v)), args(ws))[1])
    case(command, "negative relevance", "row 1", "slot_relevance", "negative")(
        lambda ws, args=args: (edit_sim_row(ws, "slot_relevance", 1, lambda v: [1.5, -0.5] + [0.0] * (len(v) - 2)), args(ws))[1])
    case(command, "unnormalised p_click", "row 2", "p_click", "sums to")(
        lambda ws, args=args: (edit_sim_row(ws, "p_click", 2, lambda v: [0.5] * len(v)), args(ws))[1])
    case(command, "p_click and relevance of different lengths", "row 0", "slots")(
        lambda ws, args=args: (edit_sim_row(ws, "p_click", 0, [0.5, 0.5]), args(ws))[1])
    case(command, "conflicting duplicate simulation rows", "repeats row 0")(
        lambda ws, args=args: (duplicate_sim_row(ws, 0, p_click=shifted(
            pq.read_table(sim_part(ws)).column("p_click").to_pylist()[0])), args(ws))[1])
    case(command, "empty user id in the simulation", "user_id", "empty")(
        lambda ws, args=args: (edit_sim_row(ws, "user_id", 0, ""), args(ws))[1])
    case(command, "missing sessions", "sessions.parquet", "not found")(
        lambda ws, args=args: (sessions_file(ws).unlink(), args(ws))[1])
    case(command, "sessions are not parquet", "sessions.parquet")(
        lambda ws, args=args: (garbage(sessions_file(ws)), args(ws))[1])
    case(command, "NaN dwell", "fixation_ms", "NaN")(
        lambda ws, args=args: (edit_parquet(sessions_file(ws), "fixation_ms", pa.array(
            [[float("nan")] * len(r) for r in pq.read_table(sessions_file(ws)).column("fixation_ms").to_pylist()],
            pa.list_(pa.float32()))), args(ws))[1])
    case(command, "click outside the slate", "clicked_slot")(
        lambda ws, args=args: (edit_parquet(sessions_file(ws), "clicked_slot", pa.array(
            [99] * pq.read_table(sessions_file(ws)).num_rows, pa.int32())), args(ws))[1])
    case(command, "cursor signal without cursor dwell", "cursor_ms")(
        lambda ws, args=args: (drop_column(sessions_file(ws), "cursor_ms"), args(ws, "--signal", "cursor"))[1])
    case(command, "NaN tau", "--tau")(lambda ws, args=args: args(ws, "--tau", "nan"))
    case(command, "zero tau", "--tau")(lambda ws, args=args: args(ws, "--tau", "0"))
    case(command, "dwell of another slot count than the simulation", "slots")(
        lambda ws, args=args: (edit_sim_row(ws, "p_click", 0, lambda v: v + [0.0]),
                               edit_sim_row(ws, "slot_relevance", 0, lambda v: v + [0.0]), args(ws))[2])
    case(command, "out is a file", "out")(
        lambda ws, args=args: (garbage(ws / "outfile"), [a if a not in (ws / "scored", ws / "pics") else ws / "outfile"
                                                          for a in args(ws)])[1])

case("score", "unknown split", "--split")(lambda ws: score_args(ws, "--split", "bogus"))
case("score", "top-k JS k of 0", "--topk-js-k")(lambda ws: score_args(ws, "--topk-js-k", "0"))
case("score", "unknown tie rule", "--tie-rule")(lambda ws: score_args(ws, "--tie-rule", "coin"))
case("score", "compare with a folder that is not a score", "per_sample.csv")(
    lambda ws: score_args(ws, "--compare", ws / "data"))
case("score", "compare with a corrupt per_sample.csv", "per_sample.csv")(
    lambda ws: ((ws / "other").mkdir(), garbage(ws / "other" / "per_sample.csv",
                                                b"user_id,slate_id,kl\n\xff\xfe,x,1\n"),
                score_args(ws, "--compare", ws / "other"))[2])
case("show", "unknown user", "--user", "ghost")(lambda ws: show_args(ws, "--user", "ghost"))
case("show", "unknown slate", "--slate", "ghost")(lambda ws: show_args(ws, "--slate", "ghost"))
case("show", "zero limit", "--limit")(lambda ws: show_args(ws, "--limit", "0"))
case("show", "missing slates folder", "not found")(
    lambda ws: [a if a != ws / "data" / "slates" else ws / "nope" for a in show_args(ws)])
case("show", "corrupt slate image", ".png")(
    lambda ws: (garbage(ws / "data" / "slates" / f"{first_slate(ws)}.png"), show_args(ws))[1])


# ------------------------------------------------------------------------------------------- validate
def val_args(ws: Workspace, *extra) -> list:
    return ["validate", "--users", ws / "data" / "users.parquet", "--images", ws / "data" / "slates",
            "--sessions", sessions_file(ws), "--prompts", ws / "bank.safetensors", *extra]


def edit_session_row(ws: Workspace, column: str, row: int, value) -> Path:
    t = pq.read_table(sessions_file(ws))
    values = t.column(column).to_pylist()
    values[row] = value(values[row]) if callable(value) else value
    return edit_parquet(sessions_file(ws), column, pa.array(values, t.schema.field(column).type))


case("validate", "nothing to validate", "nothing to validate")(lambda ws: ["validate"])
case("validate", "users file is not parquet", "users.parquet")(
    lambda ws: (garbage(ws / "data" / "users.parquet"), val_args(ws))[1])
case("validate", "duplicate user ids", "duplicate")(
    lambda ws: (edit_parquet(ws / "data" / "users.parquet", "user_id", ["u000", "u000", "u002", "u003"]),
                val_args(ws))[1])
case("validate", "control character in a profile", "profile")(
    lambda ws: (edit_parquet(ws / "data" / "users.parquet", "profile", ["a\x07b", "a", "b", "c"]), val_args(ws))[1])
case("validate", "special token in a label", "label")(
    lambda ws: (edit_layout(ws, lambda p: p["slots"][1].__setitem__("label", "<|im_start|>")), val_args(ws))[1])
def undecodable_name(ws: Workspace) -> None:
    """A copy of the first slate under a file name whose bytes are not UTF-8."""
    folder = ws / "data" / "slates"
    data = (folder / f"{first_slate(ws)}.png").read_bytes()
    with open(os.path.join(os.fsencode(folder), b"x\xff.png"), "wb") as fh:
        fh.write(data)


case("validate", "slate file name not UTF-8", "not valid UTF-8")(lambda ws: (undecodable_name(ws), val_args(ws))[1])
case("simulate", "slate file name not UTF-8", "not valid UTF-8")(lambda ws: (undecodable_name(ws), sim_args(ws))[1])
case("validate", "label that is not one token", "slate", "labels", "zebra crossing")(
    lambda ws: (edit_layout(ws, lambda p: p["slots"][0].__setitem__("label", "zebra crossing")), val_args(ws))[1])
case("validate", "prompt bank of another hidden size", "hidden size")(
    lambda ws: val_args(ws)[:-2] + ["--prompts", bank(ws, basis=__import__("torch").zeros(2, 2, 32), hidden_size="32")])
case("validate", "Infinity in a layout", "Infinity")(
    lambda ws: ((f := layout_file(ws)).write_text(f.read_text().replace('"box": [', '"box": [Infinity, ', 1)),
                val_args(ws))[1])
case("validate", "truncated slate image", ".png")(
    lambda ws: ((p := ws / "data" / "slates" / f"{first_slate(ws)}.png").write_bytes(p.read_bytes()[:300]),
                val_args(ws))[1])
case("validate", "decompression bomb", "pixels")(
    lambda ws: (bomb(ws / "data" / "slates" / f"{first_slate(ws)}.png"), val_args(ws))[1])
case("validate", "a folder named like a slate", "not a regular file")(
    lambda ws: ((ws / "data" / "slates" / "zz.png").mkdir(), val_args(ws))[1])
case("validate", "session of an unknown user", "user_id", "ghost")(
    lambda ws: (edit_session_row(ws, "user_id", 0, "ghost"), val_args(ws))[1])
case("validate", "session of an unknown slate", "slate_id", "ghost")(
    lambda ws: (edit_session_row(ws, "slate_id", 0, "ghost"), val_args(ws))[1])
case("validate", "dwell of the wrong length", "row 0", "fixation_ms")(
    lambda ws: (edit_session_row(ws, "fixation_ms", 0, lambda v: v[:-1]), val_args(ws))[1])
case("validate", "negative dwell", "row 1", "negative")(
    lambda ws: (edit_session_row(ws, "fixation_ms", 1, lambda v: [-5.0] + v[1:]), val_args(ws))[1])
case("validate", "unknown split", "split")(lambda ws: (edit_session_row(ws, "split", 0, "holdout"), val_args(ws))[1])
case("validate", "duplicate sessions", "duplicate")(
    lambda ws: (edit_session_row(ws, "slate_id", 1, pq.read_table(sessions_file(ws)).column("slate_id")[0].as_py())
                if pq.read_table(sessions_file(ws)).column("user_id")[0] == pq.read_table(sessions_file(ws)).column(
                    "user_id")[1] else edit_session_row(ws, "user_id", 1, pq.read_table(sessions_file(ws)).column(
                        "user_id")[0].as_py()) and edit_session_row(ws, "slate_id", 1, pq.read_table(
                            sessions_file(ws)).column("slate_id")[0].as_py()), val_args(ws))[1])
case("validate", "prompt bank with Inf", "non-finite")(
    lambda ws: val_args(ws)[:-2] + ["--prompts", bank(ws, alpha=__import__("torch").full((4, 2), float("inf")))])
case("validate", "prompt bank with integer tensors", "bank.safetensors")(
    lambda ws: val_args(ws)[:-2] + ["--prompts", bank(ws, basis=__import__("torch").zeros(2, 2, 64, dtype=__import__(
        "torch").int32))])
case("validate", "prompt bank with K = 0", "bank.safetensors")(
    lambda ws: val_args(ws)[:-2] + ["--prompts", bank(ws, basis=__import__("torch").zeros(0, 2, 64),
                                                      alpha=__import__("torch").zeros(4, 0))])
case("validate", "prompt bank with non-string user ids", "user_ids")(
    lambda ws: val_args(ws)[:-2] + ["--prompts", bank(ws, user_ids=json.dumps([1, 2, 3, 4]))])
case("validate", "prompt bank user ids not a list", "user_ids")(
    lambda ws: val_args(ws)[:-2] + ["--prompts", bank(ws, user_ids=json.dumps({"a": 1}))])


# ---------------------------------------------------------------------------------------------- synth
def synth_args(ws: Workspace, *extra) -> list:
    return ["synth", ws / "synthetic", "--users", "2", "--slates", "3", *extra]


def synth_into(ws: Workspace, target, *extra) -> list:
    return ["synth", target, "--users", "2", "--slates", "3", *extra]


case("synth", "one user", "--users")(lambda ws: synth_args(ws, "--users", "1"))
case("synth", "zero users", "--users")(lambda ws: synth_args(ws, "--users", "0"))
case("synth", "negative users", "--users")(lambda ws: synth_args(ws, "--users", "-4"))
case("synth", "users not a number", "--users")(lambda ws: synth_args(ws, "--users", "many"))
case("synth", "fractional users", "--users")(lambda ws: synth_args(ws, "--users", "2.5"))
case("synth", "absurdly many users", "--users")(lambda ws: synth_args(ws, "--users", "1000000000"))
case("synth", "two slates", "--slates")(lambda ws: synth_args(ws, "--slates", "2"))
case("synth", "absurdly many slates", "--slates")(lambda ws: synth_args(ws, "--slates", "1000000000"))
case("synth", "negative seed", "--seed")(lambda ws: synth_args(ws, "--seed", "-1"))
case("synth", "seed not a number", "--seed")(lambda ws: synth_args(ws, "--seed", "x"))
case("synth", "out is a file", "outfile")(lambda ws: (garbage(ws / "outfile"), synth_into(ws, ws / "outfile"))[1])
case("synth", "out inside a file", "outfile")(
    lambda ws: (garbage(ws / "outfile"), synth_into(ws, ws / "outfile" / "sub"))[1])
case("synth", "out holds other files", "was not created by")(lambda ws: synth_into(ws, ws.root))
case("synth", "out holds a simulation", "output of `fixate-rt simulate`")(lambda ws: synth_into(ws, ws / "sim"))
case("synth", "unknown option", "--colour")(lambda ws: synth_args(ws, "--colour", "red"))
case("synth", "missing folder argument", "Missing argument")(lambda ws: ["synth"])


# ------------------------------------------------------------------------------------- import-recgaze
def rg_args(ws: Workspace, *extra) -> list:
    return ["import-recgaze", ws / "recgaze" / "records.jsonl", "--images-root", ws / "recgaze" / "images",
            "--out", ws / "imported", "--user-features", ws / "recgaze" / "features.csv", *extra]


def edit_records(ws: Workspace, fn) -> Path:
    path = ws / "recgaze" / "records.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    fn(records)
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def set_field(index: int, key: str, value):
    return lambda records: records[index].__setitem__(key, value)


def rg_case(name: str, *needles: str):
    """A RecGaze case that edits the records with the function it decorates."""
    def register(fn):
        case("import-recgaze", name, *needles)(lambda ws: (edit_records(ws, fn), rg_args(ws))[1])
        return fn
    return register


case("import-recgaze", "missing records file", "records.jsonl", "not found")(
    lambda ws: ((ws / "recgaze" / "records.jsonl").unlink(), rg_args(ws))[1])
case("import-recgaze", "records not UTF-8", "records.jsonl", "UTF-8")(
    lambda ws: (garbage(ws / "recgaze" / "records.jsonl", b'{"user_id": "\xff"}\n'), rg_args(ws))[1])
case("import-recgaze", "records not JSON", "line 1", "invalid JSON")(
    lambda ws: (garbage(ws / "recgaze" / "records.jsonl", b"{oops\n"), rg_args(ws))[1])
case("import-recgaze", "a record that is not an object", "line 1", "JSON object")(
    lambda ws: (garbage(ws / "recgaze" / "records.jsonl", b"[1, 2]\n"), rg_args(ws))[1])
rg_case("record without slot_fix", "line 2", "slot_fix")(lambda r: r[1].pop("slot_fix"))
rg_case("NaN dwell", "line 1", "NaN")(lambda r: r[0].__setitem__("slot_fix", [float("nan")] * 15))
rg_case("dwell given as text", "line 1", "slot_fix")(set_field(0, "slot_fix", ["100"] * 15))
rg_case("short box", "line 1", "box 0")(lambda r: r[0]["bboxes"].__setitem__(0, [1, 2, 3]))
rg_case("box of strings", "line 1", "box 2")(lambda r: r[0]["bboxes"].__setitem__(2, ["a", "b", "c", "d"]))
rg_case("inverted box", "line 2", "box 1", "inverted")(lambda r: r[1]["bboxes"].__setitem__(1, [400, 369, 100, 176]))
rg_case("box outside the image", "line 1", "box 4", "outside")(
    lambda r: r[0]["bboxes"].__setitem__(4, [5000, 5000, 5100, 5100]))
rg_case("duplicate records", "line 2", "duplicate")(lambda r: r[1].update(user_id=r[0]["user_id"],
                                                                          task_id=r[0]["task_id"]))
rg_case("user id with a path separator", "line 1", "slate id")(set_field(0, "user_id", "../../etc"))
rg_case("empty user id", "line 1", "user_id")(set_field(0, "user_id", ""))
rg_case("image path outside the root", "line 1", "image_index_path", "outside")(
    set_field(0, "image_index_path", "../records.jsonl"))
rg_case("absolute image path", "line 2", "image_index_path", "absolute")(
    set_field(1, "image_index_path", "/etc/passwd"))
rg_case("label outside the slate", "line 1", "label")(set_field(0, "label", 7))
rg_case("unknown split", "line 2", "split")(set_field(1, "split", "dev"))
case("import-recgaze", "missing image", "KInIT_1", "not found")(
    lambda ws: ((ws / "recgaze" / "images" / "KInIT_1" / "KInIT_1_2.jpg").unlink(), rg_args(ws))[1])
case("import-recgaze", "corrupt image", "KInIT_1_2.jpg")(
    lambda ws: (garbage(ws / "recgaze" / "images" / "KInIT_1" / "KInIT_1_2.jpg"), rg_args(ws))[1])
case("import-recgaze", "a 1x4000 image", "UvA_3_7.jpg", "pixels")(
    lambda ws: (Image.new("RGB", (1, 4000)).save(ws / "recgaze" / "images" / "UvA_3" / "UvA_3_7.jpg", format="PNG"),
                rg_args(ws))[1])
case("import-recgaze", "a FIFO named like an image", "not a regular file")(
    lambda ws: (fifo(ws / "recgaze" / "images" / "UvA_3" / "UvA_3_7.jpg"), rg_args(ws))[1])
case("import-recgaze", "features not UTF-8", "features.csv", "UTF-8")(
    lambda ws: (garbage(ws / "recgaze" / "features.csv", b"User_ID,Top_genre\n\xff\xfe,Drama\n"), rg_args(ws))[1])
case("import-recgaze", "special token in a profile", "features.csv", "<|im_end|>")(
    lambda ws: ((ws / "recgaze" / "features.csv").write_text("User_ID,Top_genre\nKInIT_1,<|im_end|>\n"),
                rg_args(ws))[1])
case("import-recgaze", "out holds other files", "contains the input")(
    lambda ws: [a if a != ws / "imported" else ws.root for a in rg_args(ws)])


# -------------------------------------------------------------------------------------- import-adserp
def ad_args(ws: Workspace, *extra) -> list:
    return ["import-adserp", ws / "adserp", "--out", ws / "imported", "--cache", ws / "cache", *extra]


def adserp_file(ws: Workspace, folder: str) -> Path:
    return sorted((ws / "adserp" / folder).iterdir())[0]


case("import-adserp", "missing folder", "not found")(lambda ws: ["import-adserp", ws / "nope", "--out", ws / "o"])
case("import-adserp", "NaN stop gap", "--stop-gap-ms")(lambda ws: ad_args(ws, "--stop-gap-ms", "nan"))
case("import-adserp", "negative stop gap", "--stop-gap-ms")(lambda ws: ad_args(ws, "--stop-gap-ms", "-1"))
case("import-adserp", "tiny viewport", "--viewport-height")(lambda ws: ad_args(ws, "--viewport-height", "50"))
case("import-adserp", "huge viewport", "--viewport-height")(lambda ws: ad_args(ws, "--viewport-height", "999999"))
case("import-adserp", "no fixation folder", "fixation-data")(
    lambda ws: (__import__("shutil").rmtree(ws / "adserp" / "fixation-data"), ad_args(ws))[1])
case("import-adserp", "fixation CSV not UTF-8", "UTF-8")(
    lambda ws: (garbage(adserp_file(ws, "fixation-data"), b"a,b\n\xff\xfe,1\n"), ad_args(ws))[1])
case("import-adserp", "fixation CSV without its columns", "missing column")(
    lambda ws: (garbage(adserp_file(ws, "fixation-data"), b"a,b\n1,2\n"), ad_args(ws))[1])
case("import-adserp", "NaN fixation time", "not finite")(
    lambda ws: ((f := adserp_file(ws, "fixation-data")).write_text(
        "\n".join([(lines := f.read_text().splitlines())[0]] + [",".join(
            ["nan" if i == 0 and j > 0 else v for i, v in enumerate(line.split(","))]) for j, line in
            enumerate(lines[1:], start=1)])) , ad_args(ws))[1])
case("import-adserp", "missing mouse log", "mouse-movement-data")(
    lambda ws: (adserp_file(ws, "mouse-movement-data").unlink(), ad_args(ws))[1])
case("import-adserp", "participants not UTF-8", "participants.csv", "UTF-8")(
    lambda ws: (garbage(ws / "adserp" / "participants.csv", b"participant_id,age\n\xff,3\n"), ad_args(ws))[1])
case("import-adserp", "participants without participant_id", "participant_id")(
    lambda ws: (garbage(ws / "adserp" / "participants.csv", b"pid,age\n1,3\n"), ad_args(ws))[1])
case("import-adserp", "special token in a profile", "participants.csv", "<|image_pad|>")(
    lambda ws: ((ws / "adserp" / "participants.csv").write_text("participant_id,age\np1,<|image_pad|>\n"),
                ad_args(ws))[1])
case("import-adserp", "ads JSON corrupt", ".json")(
    lambda ws: (garbage(adserp_file(ws, "ad-boundary-data"), b"{nope"), ad_args(ws))[1])
case("import-adserp", "trial metadata corrupt", ".xml")(
    lambda ws: (garbage(adserp_file(ws, "trial-metadata"), b"<nope"), ad_args(ws))[1])
case("import-adserp", "cache is a file", "cache")(
    lambda ws: (garbage(ws / "cache"), ad_args(ws))[1])
case("import-adserp", "out holds other files", "contains the input")(
    lambda ws: [a if a != ws / "imported" else ws.root for a in ad_args(ws)])


# ---------------------------------------------------------------------------------------------- train
def train_args(ws: Workspace, *extra) -> list:
    return ["train", "--sessions", sessions_file(ws), "--images", ws / "data" / "slates", "--users",
            ws / "data" / "users.parquet", "--out", ws / "trained", "--epochs", "1", "--seeds", "1",
            "--device", "cpu", "--basis", "2", "--soft-tokens", "2", *extra]


def model_config(ws: Workspace, payload: bytes) -> Path:
    (ws / "model" / "config.json").write_bytes(payload)
    return ws / "model"


for option in ("--lr-basis", "--lr-alpha", "--lambda-attn", "--gamma", "--beta"):
    case("train", f"NaN {option}", option)(lambda ws, o=option: train_args(ws, o, "nan"))
for option in ("--lr-basis", "--choice-weight"):
    case("train", f"negative {option}", option)(lambda ws, o=option: train_args(ws, o, "-1"))
case("train", "infinite --tau", "--tau")(lambda ws: train_args(ws, "--tau", "inf"))
case("train", "negative warm-up", "--warmup-steps")(lambda ws: train_args(ws, "--warmup-steps", "-1"))
case("train", "zero bases", "--basis")(lambda ws: train_args(ws, "--basis", "0"))
case("train", "zero soft tokens", "--soft-tokens")(lambda ws: train_args(ws, "--soft-tokens", "0"))
case("train", "zero epochs", "--epochs")(lambda ws: train_args(ws, "--epochs", "0"))
case("train", "seeds that are not integers", "--seeds")(lambda ws: train_args(ws, "--seeds", "1,x"))
case("train", "cold start without a bank", "--freeze-basis")(lambda ws: train_args(ws, "--freeze-basis"))
case("train", "NaN dwell", "fixation_ms", "NaN")(
    lambda ws: (edit_session_row(ws, "fixation_ms", 0, lambda v: [float("nan")] + v[1:]), train_args(ws))[1])
case("train", "session of an unknown slate", "slate_id", "ghost")(
    lambda ws: (edit_session_row(ws, "slate_id", 0, "ghost"), train_args(ws))[1])
case("train", "no training sessions", "train")(
    lambda ws: (edit_parquet(sessions_file(ws), "split", ["test"] * pq.read_table(sessions_file(ws)).num_rows),
                train_args(ws))[1])
case("train", "corrupt --init-from", "bank.safetensors")(
    lambda ws: train_args(ws, "--init-from", garbage(ws / "bank.safetensors")))
case("train", "--init-from with another K", "K=")(lambda ws: train_args(ws, "--init-from", ws / "bank.safetensors",
                                                                        "--basis", "3"))
case("train", "special token in a profile", "profile")(
    lambda ws: (edit_parquet(ws / "data" / "users.parquet", "profile", ["x<|vision_start|>", "a", "b", "c"]),
                train_args(ws))[1])
case("train", "model folder without config.json", "config.json")(lambda ws: train_args(ws, "--model", ws / "data"))
case("train", "model config not JSON", "config.json")(
    lambda ws: train_args(ws, "--model", model_config(ws, b"{oops")))
case("train", "corrupt model weights", "cannot load")(
    lambda ws: (garbage(next((ws / "model").glob("*.safetensors"))), train_args(ws, "--model", ws / "model"))[1])
case("train", "label that is not one token", "slate", "labels")(
    lambda ws: (edit_layout(ws, lambda p: p["slots"][3].__setitem__("label", "zebra crossing")), train_args(ws))[1])
case("train", "rerun into a previous run", "was not created by `fixate-rt train`")(
    lambda ws: ((ws / "trained" / "checkpoints").mkdir(parents=True), train_args(ws))[1])
case("train", "resume with nothing to resume", "no training run to resume")(lambda ws: train_args(ws, "--resume"))
case("train", "resume from an unreadable config", "train_config.json")(
    lambda ws: ((ws / "trained").mkdir(), garbage(ws / "trained" / "train_config.json"), train_args(ws, "--resume"))[2])
case("train", "out is a file", "outfile")(
    lambda ws: (garbage(ws / "outfile"), [a if a != ws / "trained" else ws / "outfile" for a in train_args(ws)])[1])


# --------------------------------------------------------------------------------------------- export
def export_args(ws: Workspace, *extra) -> list:
    return ["export", "--out", ws / "exported", *extra]


for size in ("1x1", "abc", "0x10", "99999x619", "10x10x10", "-5x100"):
    case("export", f"image size {size}", "--image-size")(lambda ws, s=size: export_args(ws, "--image-size", s))
case("export", "unknown format", "--format")(lambda ws: export_args(ws, "--format", "tflite"))
case("export", "missing prompt bank", "bank2.safetensors")(
    lambda ws: export_args(ws, "--prompts", ws / "bank2.safetensors"))
case("export", "corrupt prompt bank", "bank.safetensors")(
    lambda ws: export_args(ws, "--prompts", garbage(ws / "bank.safetensors")))
case("export", "prompt bank with NaN", "non-finite")(
    lambda ws: export_args(ws, "--prompts", bank(ws, basis=__import__("torch").full((2, 2, 64), float("nan")))))
case("export", "prompt bank of another hidden size", "hidden size")(
    lambda ws: export_args(ws, "--prompts", bank(ws, basis=__import__("torch").zeros(2, 2, 32), hidden_size="32")))
case("export", "missing model folder", "config.json")(lambda ws: export_args(ws, "--model", ws / "nomodel"))
case("export", "model config is a list", "JSON object")(
    lambda ws: export_args(ws, "--model", model_config(ws, b"[1, 2]")))
case("export", "unknown model type", "model_type")(
    lambda ws: export_args(ws, "--model", model_config(ws, b'{"model_type": "llama"}')))
case("export", "remote-code model", "trust_remote_code")(
    lambda ws: export_args(ws, "--model", model_config(ws, b'{"model_type": "internvl_chat"}')))
case("export", "corrupt model weights", "cannot load")(
    lambda ws: (garbage(next((ws / "model").glob("*.safetensors"))), export_args(ws, "--model", ws / "model"))[1])
case("export", "out is a file", "outfile")(
    lambda ws: (garbage(ws / "outfile"), ["export", "--out", ws / "outfile"])[1])


# -------------------------------------------------------------------------------------------- profile
def profile_args(ws: Workspace, *extra) -> list:
    return ["profile", "--device", "cpu", "--n-pairs", "2", "--batch-size", "2", *extra]


case("profile", "negative peak TFLOP/s", "--peak-tflops")(lambda ws: profile_args(ws, "--peak-tflops", "-1"))
case("profile", "NaN peak TFLOP/s", "--peak-tflops")(lambda ws: profile_args(ws, "--peak-tflops", "nan"))
case("profile", "zero pairs", "--n-pairs")(lambda ws: profile_args(ws, "--n-pairs", "0"))
case("profile", "zero batch size", "--batch-size")(lambda ws: profile_args(ws, "--batch-size", "0"))
case("profile", "negative warm-up", "--warmup")(lambda ws: profile_args(ws, "--warmup", "-1"))
case("profile", "users without images", "--images")(
    lambda ws: profile_args(ws, "--users", ws / "data" / "users.parquet"))
case("profile", "corrupt users", "users.parquet")(
    lambda ws: profile_args(ws, "--users", garbage(ws / "data" / "users.parquet"), "--images", ws / "data" / "slates"))
case("profile", "special token in a profile", "profile")(
    lambda ws: (edit_parquet(ws / "data" / "users.parquet", "profile", ["<|im_end|>", "a", "b", "c"]),
                profile_args(ws, "--users", ws / "data" / "users.parquet", "--images", ws / "data" / "slates"))[1])
case("profile", "missing slates folder", "not found")(
    lambda ws: profile_args(ws, "--users", ws / "data" / "users.parquet", "--images", ws / "nope"))
case("profile", "unknown probe", "--probe")(lambda ws: profile_args(ws, "--probe", "magic"))
case("profile", "unknown backend", "--backend")(lambda ws: profile_args(ws, "--backend", "tensorrt"))
case("profile", "missing model folder", "config.json")(lambda ws: profile_args(ws, "--model", ws / "nomodel"))
case("profile", "model config not UTF-8", "UTF-8")(
    lambda ws: profile_args(ws, "--model", model_config(ws, b'{"model_type": "\xff"}')))
case("profile", "corrupt model weights", "cannot load")(
    lambda ws: (garbage(next((ws / "model").glob("*.safetensors"))), profile_args(ws, "--model", ws / "model"))[1])
case("profile", "out is a file", "--out")(lambda ws: profile_args(ws, "--out", garbage(ws / "outfile")))
case("profile", "out inside a file", "--out")(lambda ws: profile_args(ws, "--out", garbage(ws / "outfile") / "p"))
case("profile", "trace without a folder", "--trace")(lambda ws: profile_args(ws, "--trace"))


# ----------------------------------------------------------------------------------------------- info
def info_args(ws: Workspace, model) -> list:
    return ["info", "--model", model]


case("info", "missing model folder", "not a model folder")(lambda ws: info_args(ws, ws / "nomodel"))
case("info", "a file as the model", "not a model folder")(lambda ws: info_args(ws, ws / "bank.safetensors"))
case("info", "config.json is a folder", "not a model folder")(
    lambda ws: ((ws / "data" / "config.json").mkdir(), info_args(ws, ws / "data"))[1])
case("info", "config.json is a FIFO", "not a model folder")(
    lambda ws: (fifo(ws / "model" / "config.json"), info_args(ws, ws / "model"))[1])
case("info", "empty config.json", "invalid JSON")(lambda ws: info_args(ws, model_config(ws, b"")))
case("info", "config.json not JSON", "invalid JSON")(lambda ws: info_args(ws, model_config(ws, b"{oops")))
case("info", "config.json not UTF-8", "UTF-8")(lambda ws: info_args(ws, model_config(ws, b'{"a": "\xff\xfe"}')))
case("info", "config.json is a list", "JSON object")(lambda ws: info_args(ws, model_config(ws, b"[]")))
case("info", "config.json is a number", "JSON object")(lambda ws: info_args(ws, model_config(ws, b"3")))
case("info", "no model_type", "model_type")(lambda ws: info_args(ws, model_config(ws, b"{}")))
case("info", "unknown model_type", "model_type", "gpt2")(
    lambda ws: info_args(ws, model_config(ws, b'{"model_type": "gpt2"}')))
case("info", "remote-code InternVL", "trust_remote_code")(
    lambda ws: info_args(ws, model_config(ws, b'{"model_type": "internvl_chat"}')))
case("info", "corrupt weights", "cannot load")(
    lambda ws: (garbage(next((ws / "model").glob("*.safetensors"))), info_args(ws, ws / "model"))[1])
case("info", "missing weights", "cannot load")(
    lambda ws: (next((ws / "model").glob("*.safetensors")).unlink(), info_args(ws, ws / "model"))[1])
case("info", "truncated weights", "cannot load")(
    lambda ws: ((w := next((ws / "model").glob("*.safetensors"))).write_bytes(w.read_bytes()[:1000]),
                info_args(ws, ws / "model"))[1])
case("info", "unknown option", "--colour")(lambda ws: ["info", "--colour", "red"])


# -------------------------------------------------------------------------- permute and the experiments
def permute_args(ws: Workspace, *extra, policy="reverse") -> list:
    return ["permute", "--images", ws / "data" / "slates", "--out", ws / "variant", "--policy", policy, *extra]


def order_file(ws: Workspace, **columns) -> Path:
    return table(ws / "order.parquet", **columns)


case("permute", "missing slates folder", "not found")(
    lambda ws: [a if a != ws / "data" / "slates" else ws / "nope" for a in permute_args(ws)])
case("permute", "unknown policy", "--policy", "sideways")(lambda ws: permute_args(ws, policy="sideways"))
case("permute", "swap with an unknown label", "ZZ")(lambda ws: permute_args(ws, policy="swap:A,ZZ"))
case("permute", "swap of a label with itself", "itself")(lambda ws: permute_args(ws, policy="swap:A,A"))
case("permute", "order file not parquet", "order.parquet")(
    lambda ws: permute_args(ws, policy=garbage(ws / "order.parquet")))
case("permute", "order file without order", "order")(
    lambda ws: permute_args(ws, policy=order_file(ws, slate_id=[first_slate(ws)])))
case("permute", "order file naming an unknown slate", "ghost")(
    lambda ws: permute_args(ws, policy=order_file(ws, slate_id=["ghost"], order=[list("ABCDEFGHIJKLMNO")])))
case("permute", "order file naming an unknown label", "'Q'")(
    lambda ws: permute_args(ws, policy=order_file(ws, slate_id=[first_slate(ws)], order=[list("QBCDEFGHIJKLMNO")])))
case("permute", "order file repeating a label", "exactly once")(
    lambda ws: permute_args(ws, policy=order_file(ws, slate_id=[first_slate(ws)], order=[list("AACDEFGHIJKLMNO")])))
case("permute", "order file with a slate twice", "duplicate")(
    lambda ws: permute_args(ws, policy=order_file(ws, slate_id=[first_slate(ws)] * 2, order=[list("ABCDEFGHIJKLMNO")] * 2)))
case("permute", "out is the source folder", "is the input")(
    lambda ws: [a if a != ws / "variant" else ws / "data" / "slates" for a in permute_args(ws)])
case("permute", "out holds other files", "contains the input")(
    lambda ws: [a if a != ws / "variant" else ws / "data" for a in permute_args(ws)])
case("permute", "out is a file", "outfile")(
    lambda ws: (garbage(ws / "outfile"), [a if a != ws / "variant" else ws / "outfile" for a in permute_args(ws)])[1])
case("permute", "unknown label mode", "--labels")(lambda ws: permute_args(ws, "--labels", "colour"))
case("permute", "negative seed", "--seed")(lambda ws: permute_args(ws, "--seed", "-2"))
case("permute", "corrupt source image", ".png")(
    lambda ws: (garbage(ws / "data" / "slates" / f"{first_slate(ws)}.png"), permute_args(ws))[1])
case("permute", "boxes of different sizes", "equal size")(
    lambda ws: (edit_layout(ws, lambda p: p["slots"][0].__setitem__("box", [p["slots"][0]["box"][0],
                p["slots"][0]["box"][1], p["slots"][0]["box"][2] - 20, p["slots"][0]["box"][3]])), permute_args(ws))[1])


def second_run(ws: Workspace) -> Path:
    import shutil

    shutil.copytree(ws / "sim", ws / "sim2")
    return ws / "sim2"


def cmp_args(ws: Workspace, *extra) -> list:
    return ["compare", ws / "sim", second_run(ws) if not (ws / "sim2").exists() else ws / "sim2", "--out",
            ws / "cmp", *extra]


def edit_run(path: Path, column: str, fn) -> Path:
    t = read_simulation(path)[0]
    values = [fn(v) for v in t.column(column).to_pylist()]
    edit_parquet(only_part(path), column, pa.array(values, t.schema.field(column).type))
    return path


def first_row_only(fn):
    done = []

    def edit(value):
        if done:
            return value
        done.append(1)
        return fn(value)
    return edit


case("compare", "missing run", "not found")(lambda ws: ["compare", ws / "nope", ws / "sim", "--out", ws / "cmp"])
case("compare", "run not parquet", "simulations")(
    lambda ws: (garbage(only_part(second_run(ws))), cmp_args(ws))[1])
case("compare", "run without click_slot", "click_slot")(
    lambda ws: (drop_column(only_part(second_run(ws)), "click_slot"), cmp_args(ws))[1])
case("compare", "unpaired users", "only in A", "--allow-unpaired")(
    lambda ws: (edit_run(second_run(ws), "user_id", lambda u: u if u != "u000" else "someone"), cmp_args(ws))[1])
case("compare", "runs over other slates", "different slates")(
    lambda ws: (edit_run(second_run(ws), "slate_id", lambda s: s + "x"), cmp_args(ws))[1])
case("compare", "level above 1", "--level")(lambda ws: cmp_args(ws, "--level", "1.5"))
case("compare", "NaN level", "--level")(lambda ws: cmp_args(ws, "--level", "nan"))
case("compare", "too few resamples", "--resamples")(lambda ws: cmp_args(ws, "--resamples", "10"))
case("compare", "NaN p_click", "finite")(
    lambda ws: (edit_run(second_run(ws), "p_click", first_row_only(lambda v: [float("nan")] * len(v))), cmp_args(ws))[1])
case("compare", "click outside the slate", "click_slot")(
    lambda ws: (edit_run(second_run(ws), "click_slot", first_row_only(lambda v: 99)), cmp_args(ws))[1])
case("compare", "empty user id", "user_id", "empty")(
    lambda ws: (edit_run(second_run(ws), "user_id", first_row_only(lambda v: "")), cmp_args(ws))[1])
case("compare", "out holds other files", "output of `fixate-rt synth`")(
    lambda ws: [a if a != ws / "cmp" else ws / "data" for a in cmp_args(ws)])
case("compare", "out is a file", "outfile")(
    lambda ws: (garbage(ws / "outfile"), [a if a != ws / "cmp" else ws / "outfile" for a in cmp_args(ws)])[1])
case("compare", "slates of B missing", "not found")(
    lambda ws: cmp_args(ws, "--images-a", ws / "data" / "slates", "--images-b", ws / "nope"))
case("compare", "variants with other items", "different items")(
    lambda ws: (__import__("shutil").copytree(ws / "data" / "slates", ws / "other"),
                (lambda f: f.write_text(f.read_text().replace('"label": "A"', '"label": "Z"', 1)))(
                    ws / "other" / "layout.json"),
                cmp_args(ws, "--images-a", ws / "data" / "slates", "--images-b", ws / "other"))[2])
case("compare", "unknown option", "--colour")(lambda ws: cmp_args(ws, "--colour", "red"))


def pb_args(ws: Workspace, *runs, images=True) -> list:
    runs = runs or (ws / "sim",)
    return ["position-bias", *runs, "--out", ws / "pb", *(["--images", ws / "data" / "slates"] if images else [])]


case("position-bias", "missing run", "not found")(lambda ws: pb_args(ws, ws / "nope"))
case("position-bias", "run not parquet", "simulations")(
    lambda ws: (garbage(only_part(ws / "sim")), pb_args(ws))[1])
case("position-bias", "run without slot_relevance", "slot_relevance")(
    lambda ws: (drop_column(only_part(ws / "sim"), "slot_relevance"), pb_args(ws))[1])
case("position-bias", "NaN relevance", "finite")(
    lambda ws: (edit_run(ws / "sim", "slot_relevance", first_row_only(lambda v: [float("nan")] * len(v))),
                pb_args(ws))[1])
case("position-bias", "negative click slot", "click_slot")(
    lambda ws: (edit_run(ws / "sim", "click_slot", first_row_only(lambda v: -1)), pb_args(ws))[1])
case("position-bias", "out is a file", "outfile")(
    lambda ws: (garbage(ws / "outfile"), [a if a != ws / "pb" else ws / "outfile" for a in pb_args(ws)])[1])
case("position-bias", "out holds other files", "contains the input")(
    lambda ws: [a if a != ws / "pb" else ws / "data" for a in pb_args(ws)])
case("position-bias", "too few sessions", "at least 10")(
    lambda ws: (pq.write_table(read_simulation(ws / "sim")[0].slice(0, 5), ws / "few.parquet"),
                pb_args(ws, ws / "few.parquet"))[1])
case("position-bias", "corrupt slate image", ".png")(
    lambda ws: (garbage(ws / "data" / "slates" / f"{first_slate(ws)}.png"), pb_args(ws))[1])
case("position-bias", "empty slate id", "slate_id", "empty")(
    lambda ws: (edit_run(ws / "sim", "slate_id", first_row_only(lambda v: "")), pb_args(ws))[1])
case("position-bias", "one of two runs corrupt", "sim2")(
    lambda ws: (garbage(only_part(second_run(ws))), pb_args(ws, ws / "sim", ws / "sim2"))[1])
case("position-bias", "no run given", "Missing argument")(lambda ws: ["position-bias", "--out", ws / "pb"])


def ec_args(ws: Workspace, *extra, fmt="yandex", images=True) -> list:
    return ["export-clicks", ws / "sim", "--format", fmt, "--out", ws / "log",
            *(["--images", ws / "data" / "slates"] if images else []), *extra]


case("export-clicks", "missing run", "not found")(
    lambda ws: [a if a != ws / "sim" else ws / "nope" for a in ec_args(ws)])
case("export-clicks", "run not parquet", "simulations")(
    lambda ws: (garbage(only_part(ws / "sim")), ec_args(ws))[1])
case("export-clicks", "unknown format", "--format")(lambda ws: ec_args(ws, fmt="csv"))
case("export-clicks", "missing format", "--format")(
    lambda ws: [a for a in ec_args(ws) if a not in ("--format", "yandex")])
case("export-clicks", "out is a file", "--out", "not a folder")(
    lambda ws: (garbage(ws / "outfile"), [a if a != ws / "log" else ws / "outfile" for a in ec_args(ws)])[1])
case("export-clicks", "out holds other files", "contains the input")(
    lambda ws: [a if a != ws / "log" else ws / "data" for a in ec_args(ws)])
# what position-bias and export-clicks both need: the slates each run was made on
for command, args in (("position-bias", pb_args), ("export-clicks", ec_args)):
    case(command, "slates unknown", "--images")(lambda ws, args=args: args(ws, images=False))
    case(command, "slates folder missing", "not found")(
        lambda ws, args=args: [a if a != ws / "data" / "slates" else ws / "nope" for a in args(ws)])
    case(command, "a slate the folder lacks", "is not in")(
        lambda ws, args=args: (edit_run(ws / "sim", "slate_id", lambda s: s + "x"), args(ws))[1])
    case(command, "slot count of the run differs", "slots")(
        lambda ws, args=args: (edit_run(ws / "sim", "p_click", lambda v: v + [0.0]),
                               edit_run(ws / "sim", "slot_relevance", lambda v: v + [0.0]), args(ws))[2])
case("export-clicks", "NaN p_click", "finite")(
    lambda ws: (edit_run(ws / "sim", "p_click", first_row_only(lambda v: [float("nan")] * len(v))), ec_args(ws))[1])
case("export-clicks", "click outside the slate", "click_slot")(
    lambda ws: (edit_run(ws / "sim", "click_slot", first_row_only(lambda v: 40)), ec_args(ws))[1])
case("export-clicks", "empty slate id", "slate_id", "empty")(
    lambda ws: (edit_run(ws / "sim", "slate_id", first_row_only(lambda v: "")), ec_args(ws))[1])
case("export-clicks", "run without click_label", "click_label")(
    lambda ws: (drop_column(only_part(ws / "sim"), "click_label"), ec_args(ws))[1])
case("export-clicks", "corrupt layout", "layout.json")(
    lambda ws: (garbage(ws / "data" / "slates" / "layout.json", b"{nope"), ec_args(ws))[1])
case("export-clicks", "unknown option", "--colour")(lambda ws: ec_args(ws, "--colour", "red"))


# -------------------------------------------------------------------------------------- profile-match
def pm_args(ws: Workspace, *extra) -> list:
    return ["profile-match", "--data", ws / "data", "--sim", ws / "sim", *extra]


def edit_truth(ws: Workspace, fn) -> Path:
    path = ws / "data" / "truth.json"
    payload = json.loads(path.read_text())
    fn(payload)
    path.write_text(json.dumps(payload))
    return path


case("profile-match", "missing truth file", "truth.json", "not found")(
    lambda ws: ((ws / "data" / "truth.json").unlink(), pm_args(ws))[1])
case("profile-match", "truth is not JSON", "truth.json", "invalid JSON")(
    lambda ws: (garbage(ws / "data" / "truth.json", b"{nope"), pm_args(ws))[1])
case("profile-match", "truth is not UTF-8", "truth.json", "UTF-8")(
    lambda ws: (garbage(ws / "data" / "truth.json", b'{"users": "\xff\xfe"}'), pm_args(ws))[1])
case("profile-match", "truth without users", "truth.json", "users")(
    lambda ws: (edit_truth(ws, lambda t: t.pop("users")), pm_args(ws))[1])
case("profile-match", "a top genre that is not a string", "truth.json", "top_genre")(
    lambda ws: (edit_truth(ws, lambda t: t["users"][0].__setitem__("top_genre", 7)), pm_args(ws))[1])
case("profile-match", "a poster without a genre", "truth.json", "genre")(
    lambda ws: (edit_truth(ws, lambda t: next(iter(t["slates"].values()))["items"][0].pop("genre")), pm_args(ws))[1])
case("profile-match", "a slate with fewer posters than slots", "p_click", "posters")(
    lambda ws: (edit_truth(ws, lambda t: [s["items"].pop() for s in t["slates"].values()]), pm_args(ws))[1])
case("profile-match", "missing run", "not found")(
    lambda ws: [a if a != ws / "sim" else ws / "nope" for a in pm_args(ws)])
case("profile-match", "run not parquet", "simulations")(
    lambda ws: (garbage(only_part(ws / "sim")), pm_args(ws))[1])
case("profile-match", "user not in the truth", "user_id", "ghost")(
    lambda ws: (edit_run(ws / "sim", "user_id", first_row_only(lambda v: "ghost")), pm_args(ws))[1])
case("profile-match", "slate not in the truth", "slate_id", "ghost")(
    lambda ws: (edit_run(ws / "sim", "slate_id", first_row_only(lambda v: "ghost")), pm_args(ws))[1])
case("profile-match", "empty user id", "user_id", "empty")(
    lambda ws: (edit_run(ws / "sim", "user_id", first_row_only(lambda v: "")), pm_args(ws))[1])
case("profile-match", "NaN p_click", "p_click", "non-finite")(
    lambda ws: (edit_run(ws / "sim", "p_click", first_row_only(lambda v: [float("nan")] * len(v))), pm_args(ws))[1])
case("profile-match", "click outside the slate", "click_slot")(
    lambda ws: (edit_run(ws / "sim", "click_slot", first_row_only(lambda v: 40)), pm_args(ws))[1])
case("profile-match", "run without click_slot", "click_slot")(
    lambda ws: (drop_column(only_part(ws / "sim"), "click_slot"), pm_args(ws))[1])
case("profile-match", "no data given", "Missing option", "--data")(lambda ws: ["profile-match", "--sim", ws / "sim"])


# --------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("c", CASES, ids=[f"{c.command}: {c.name}" for c in CASES])
def test_bad_input_gets_one_clean_line(ws, c):
    args = c.build(ws)
    expect_clean_error(ws, args, *c.needles)


def test_every_command_has_fifteen_cases():
    from typer.main import get_command

    from fixate_rt.cli import app

    counts = {name: sum(c.command == name for c in CASES) for name in get_command(app).commands}
    assert all(n >= 15 for n in counts.values()), counts


def test_show_names_files_from_encoded_ids_inside_out(ws):
    """A user id with path separators and dots becomes one percent-encoded file name inside --out."""
    from bad_inputs import tree

    evil = "../../escaped/x"
    for path in (sim_part(ws), sessions_file(ws)):
        t = pq.read_table(path)
        ids = [evil if u == "u000" else u for u in t.column("user_id").to_pylist()]
        edit_parquet(path, "user_id", pa.array(ids, pa.string()))
    before = set(tree(ws.root))
    code, lines, output = ws.run(show_args(ws, "--user", evil, "--limit", "1"))
    assert code == 0, output
    created = set(tree(ws.root)) - before
    pngs = [c for c in created if c.endswith(".png")]
    assert len(pngs) == 1 and all(c.startswith("pics") for c in created), created
    assert pngs[0].startswith("pics/%2E.%2F..%2Fescaped%2Fx__"), pngs  # one component; a leading '.' encoded too


def test_documented_limits_are_the_enforced_ones():
    from fixate_rt.data.images import MAX_PIXELS
    from fixate_rt.data.slates import MAX_SLOTS
    from fixate_rt.data.text import MAX_ID_CHARS, MAX_TEXT_CHARS

    docs = (Path(__file__).resolve().parents[1] / "docs" / "formats.md").read_text()
    section = docs[docs.index("## Limits and rules every command enforces"):]
    for figure in (f"{MAX_PIXELS:,}".replace(",", " "), f"**{MAX_SLOTS}**", f"**{MAX_TEXT_CHARS} characters**",
                   f"**{MAX_ID_CHARS} characters**"):
        assert figure in section, figure


def test_a_model_that_outputs_nan_stops_naming_the_stage(ws):
    """Weights that pass every check but compute NaN: the run stops at the first such pair, naming it and the
    stage; no run.json is written (the run is not finished)."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = next((ws / "model").glob("*.safetensors"))
    tensors = load_file(str(weights))
    name = next(k for k in tensors if k.endswith("norm.weight") and "visual" not in k and "layers" not in k)
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(weights), metadata={"format": "pt"})
    code, lines, output = ws.run(sim_args(ws, "--model", ws / "model"))
    assert code == 2 and "Traceback" not in output, output[-1500:]
    assert len(lines) == 1 and "non-finite p_click" in lines[0] and "stage: decoder" in lines[0], lines
    assert not (ws / "out" / "run.json").exists() and not list(ws.root.glob("out/simulations/part-*"))
