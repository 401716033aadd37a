"""Experiments on simulated clicks: counterfactual slates, policy comparison, position bias, click logs."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fixate_rt.cli import app
from fixate_rt.data.slates import read_slates
from fixate_rt.experiments.permute import _int_box, _redraw_grid_letters
from fixate_rt.experiments.position_bias import Configurations, fit_cascade, fit_logit, fit_pbm
from fixate_rt.run.layout import read_simulation

pytestmark = pytest.mark.slow  # left out of the quick subset: bash scripts/test.sh -m "not slow"

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def loop(tmp_path_factory, synth_dir):
    """The whole loop on the demo data: a reversed variant, both simulated, compared."""
    root = tmp_path_factory.mktemp("experiment")
    invoke("permute", "--images", synth_dir / "slates", "--out", root / "reversed", "--policy", "reverse")
    for name, images in (("a", synth_dir / "slates"), ("b", root / "reversed")):
        invoke("simulate", "--users", synth_dir / "users.parquet", "--images", images, "--out", root / f"sim_{name}",
               "--device", "cpu", "--samples", "3")
    return root


def test_items_move_with_their_pixels_labels_and_metadata(loop, synth_dir):
    source, variant = read_slates(synth_dir / "slates"), read_slates(loop / "reversed")
    assert set(variant) == set(source)  # same slate ids: the folder drops into --images
    for sid, slate in source.items():
        a, b = np.asarray(slate.load_image()), np.asarray(variant[sid].load_image())
        n = len(slate.layout.labels)
        for j in range(n):  # position j shows the source item n-1-j, pixel for pixel
            x0, y0, x1, y1 = _int_box(slate.layout.boxes[j])
            u0, v0, u1, v1 = _int_box(slate.layout.boxes[n - 1 - j])
            assert np.array_equal(b[y0:y1, x0:x1], a[v0:v1, u0:u1]), (sid, j)
        layout = variant[sid].layout
        assert layout.labels == slate.layout.labels[::-1]  # labels follow their items
        assert [it["id"] for it in layout.items] == list(slate.layout.labels[::-1])  # ids name the source item
        assert [(it["row"], it["col"]) for it in layout.items] == [(it["row"], it["col"]) for it in slate.layout.items]
        # the letters under the posters were redrawn: redrawing the variant's own labels changes nothing
        again = variant[sid].load_image()
        _redraw_grid_letters(again, layout.boxes, layout.labels)
        assert np.array_equal(np.asarray(again), b)
    record = json.loads((loop / "reversed" / ".permutation.json").read_text())
    assert record["policy"] == "reverse" and record["orders"][sid] == list(slate.layout.labels[::-1])


def test_swap_shuffle_and_order_files(tmp_path, synth_dir):
    invoke("permute", "--images", synth_dir / "slates", "--out", tmp_path / "swap", "--policy", "swap:A,F")
    sid = sorted(read_slates(synth_dir / "slates"))[0]
    labels = read_slates(tmp_path / "swap")[sid].layout.labels
    assert labels[0] == "F" and labels[5] == "A" and labels[1:5] == ("B", "C", "D", "E")
    for out in ("s1", "s2"):
        invoke("permute", "--images", synth_dir / "slates", "--out", tmp_path / out, "--policy", "shuffle", "--seed", "3")
    one, two = read_slates(tmp_path / "s1"), read_slates(tmp_path / "s2")
    assert all(one[s].layout.labels == two[s].layout.labels for s in one)  # seeded
    assert any(one[s].layout.labels != tuple(sorted(one[s].layout.labels)) for s in one)
    order = list("ONMLKJIHGFEDCBA")
    pq.write_table(pa.table({"slate_id": [sid], "order": [order]}), tmp_path / "order.parquet")
    invoke("permute", "--images", synth_dir / "slates", "--out", tmp_path / "ordered", "--policy",
           tmp_path / "order.parquet")
    ordered = read_slates(tmp_path / "ordered")
    assert list(ordered[sid].layout.labels) == order
    other = sorted(ordered)[1]
    assert ordered[other].layout.labels == read_slates(synth_dir / "slates")[other].layout.labels  # not listed: kept


def test_boxes_of_different_sizes_are_refused_with_the_reason(tmp_path):
    from PIL import Image

    folder = tmp_path / "serp"
    folder.mkdir()
    Image.new("RGB", (400, 300), (255, 255, 255)).save(folder / "p1.png")
    layout = {"image_size": [400, 300], "slots": [{"box": [10, 10, 390, 60], "label": "A"},
                                                  {"box": [10, 80, 390, 200], "label": "B"}]}
    (folder / "p1.json").write_text(json.dumps(layout))
    result = runner.invoke(app, ["permute", "--images", str(folder), "--out", str(tmp_path / "v"), "--policy",
                                 "reverse"])
    assert result.exit_code == 2 and "equal size" in result.stderr and "380x50" in result.stderr
    assert not (tmp_path / "v").exists()


def _planted_runs(tmp_path, users=200, seed=0):
    """Two runs over one 3-slot slate: in A users click item X (at position 0) with p 0.6, in B X moved to position
    2 and is clicked with p 0.3; Y and Z share the rest. Returns the two paths and the true per-item effects."""
    rng = np.random.default_rng(seed)
    paths, truth = [], {}
    for name, order, px in (("a", ["X", "Y", "Z"], 0.6), ("b", ["Y", "Z", "X"], 0.3)):
        probs = {"X": px, "Y": (1 - px) / 2, "Z": (1 - px) / 2}
        truth[name] = probs
        rows = {k: [] for k in ("user_id", "slate_id", "click_slot", "click_label", "click_item_id", "p_click",
                                "slot_relevance")}
        for u in range(users):
            for _ in range(20):
                item = rng.choice(["X", "Y", "Z"], p=[probs["X"], probs["Y"], probs["Z"]])
                rows["user_id"].append(f"u{u}")
                rows["slate_id"].append("s0")
                rows["click_slot"].append(order.index(item))
                rows["click_label"].append(item)
                rows["click_item_id"].append(item)
                rows["p_click"].append([probs[i] for i in order])
                rows["slot_relevance"].append([1 / 3] * 3)
        folder = tmp_path / f"sim_{name}"
        folder.mkdir()
        pq.write_table(pa.table(rows), folder / "simulations.parquet")
        paths.append(folder)
    return paths, {i: truth["b"][i] - truth["a"][i] for i in "XYZ"}


def test_compare_recovers_planted_effects_with_intervals(tmp_path):
    (a, b), effect = _planted_runs(tmp_path)
    invoke("compare", a, b, "--out", tmp_path / "cmp", "--seed", "1")
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    items = {r["item"]: r for r in result["per_item"]}
    for item, true in effect.items():
        row = items[f"s0/{item}"]
        assert row["low"] <= true <= row["high"], (item, row, true)
        assert abs(row["diff"] - true) < 0.03
    assert items["s0/X"]["p_wilcoxon"] < 1e-6 and items["s0/X"]["high"] < 0
    positions = {r["position"]: r for r in result["per_position"]}
    for k, true in ((0, 0.35 - 0.6), (1, 0.35 - 0.2), (2, 0.3 - 0.2)):  # B shows Y, Z, X where A showed X, Y, Z
        assert positions[k]["low"] <= true <= positions[k]["high"], (k, positions[k], true)
    assert result["overall"]["low"] <= 0.3 <= result["overall"]["high"] + 0.02  # TV = |ΔX| = 0.3
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 10_000
    assert (tmp_path / "cmp" / "per_item.csv").read_text().startswith("item,share_a,share_b,diff,low,high")


def test_compare_refuses_unpaired_users_unless_allowed(tmp_path):
    (a, b), _ = _planted_runs(tmp_path, users=12)
    t = read_simulation(b)[0]
    pq.write_table(t.filter(pa.compute.not_equal(t.column("user_id"), "u0")), b / "simulations.parquet")
    result = runner.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 2 and "1 users only in A and 0 only in B (11 in both)" in result.stderr
    assert not (tmp_path / "cmp").exists()
    invoke("compare", a, b, "--out", tmp_path / "cmp", "--allow-unpaired")
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["users"] == 11


def test_compare_on_variants_of_the_demo_data(loop):
    invoke("compare", loop / "sim_a", loop / "sim_b", "--out", loop / "cmp")
    result = json.loads((loop / "cmp" / "compare.json").read_text())
    assert result["users"] == 6 and len(result["per_position"]) == 15
    assert all(r["low"] <= r["diff"] <= r["high"] for r in result["per_item"])


def _planted_clicks(seed: int, sessions: int = 20_000):
    rng = np.random.default_rng(seed)
    P, I = 5, 15
    beta = np.array([0.0, -0.4, -0.7, -1.0, -1.3])
    gamma = rng.normal(0, 0.5, I)
    items = np.stack([rng.permutation(I)[:P] for _ in range(sessions)])
    u = beta[None] + gamma[items]
    p = np.exp(u) / np.exp(u).sum(1, keepdims=True)
    click = (p.cumsum(1) > rng.random((sessions, 1))).argmax(1)
    clicks = np.zeros((sessions, P))
    clicks[np.arange(sessions), click] = 1
    return Configurations(items, clicks, np.ones(sessions), [f"i{k}" for k in range(I)]), beta, np.log(
        p[np.arange(sessions), click]).sum()


def test_logit_recovers_planted_position_effects():
    config, beta, true_loglik = _planted_clicks(seed=0)
    fit = fit_logit(config)
    assert np.abs(np.array(fit["beta"]) - beta).max() < 0.05
    assert fit["loglik"] >= true_loglik  # the maximum-likelihood fit explains the clicks at least as well as truth
    pbm, cascade = fit_pbm(config), fit_cascade(config)
    assert np.all(np.diff(pbm["theta"]) < 0) and np.all(np.diff(cascade["examination"]) < 0)  # decreasing, as planted


def test_position_bias_and_click_logs_on_the_demo_loop(loop, tmp_path):
    invoke("position-bias", loop / "sim_a", loop / "sim_b", "--out", loop / "pb")
    result = json.loads((loop / "pb" / "position_bias.json").read_text())
    for model, key in (("logit", "beta"), ("pbm", "theta"), ("cascade", "examination")):
        assert len(result[model][key]) == 15 and np.isfinite(result[model][key]).all()
    assert result["logit"]["beta"][0] == 0.0 and result["sessions"] == 2 * 6 * 4 * 3
    assert abs(sum(result["attention"]) - 1) < 1e-3 and abs(sum(result["click_share"]) - 1) < 1e-9
    assert (loop / "pb" / "position_bias.png").stat().st_size > 10_000

    invoke("export-clicks", loop / "sim_a", "--format", "yandex", "--out", tmp_path / "log")
    lines = [line.split("\t") for line in (tmp_path / "log" / "clicks.tsv").read_text().splitlines()]
    sim = read_simulation(loop / "sim_a")[0]
    assert len(lines) == 2 * sim.num_rows
    for (q, c), slot in zip(zip(lines[::2], lines[1::2]), sim.column("click_slot").to_pylist()):
        assert q[2] == "Q" and len(q) == 5 + 15 and c[2] == "C" and c[0] == q[0]
        assert q[5 + slot] == c[3]  # the clicked URL is the one at the clicked position
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == [".fixate-rt-output.json", "clicks.tsv",
                                                                    "examination.tsv", "ids.csv"]
    examination = [line.split("\t") for line in (tmp_path / "log" / "examination.tsv").read_text().splitlines()]
    assert len(examination) == sim.num_rows and all(abs(sum(map(float, r[3:])) - 1) < 1e-3 for r in examination)


def test_clax_export_gives_the_same_pbm_in_clax_models(tmp_path):
    """clax-models fits its PBM by gradient on our clax export; its relative examination per position agrees
    with our EM fit (both maximise the same PBM likelihood)."""
    pytest.importorskip("clax", reason="the clickmodels extra (clax-models) is not installed")
    import jax.numpy as jnp
    import optax
    from clax.models.pbm import PositionBasedModel
    from flax import nnx

    config, _, _ = _planted_clicks(seed=1, sessions=8000)
    n, P = config.items.shape
    # every session shows other items in other positions: the rows in the layout `export-clicks --format clax`
    # writes (test_clax_export_layout checks the exporter writes exactly these columns)
    table = pa.table({"query_doc_ids": pa.array((config.items + 1).tolist(), pa.list_(pa.int32())),
                      "positions": pa.array([list(range(1, P + 1))] * n, pa.list_(pa.int16())),
                      "clicks": pa.array(config.clicks.tolist(), pa.list_(pa.float32())),
                      "mask": pa.array([[True] * P] * n, pa.list_(pa.bool_()))})
    ours = fit_pbm(config, iterations=500)["theta_relative"]
    batch = {k: jnp.asarray(np.array(table.column(k).to_pylist())) for k in table.column_names}
    model = PositionBasedModel(positions=P + 1, query_doc_pairs=int(config.items.max()) + 2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, batch):
        loss, grads = nnx.value_and_grad(lambda m: m.compute_loss(batch).mean())(model)
        optimizer.update(model, grads)
        return loss

    for _ in range(1500):
        step(model, optimizer, batch)
    theirs = np.asarray(model.examination.prob(batch))[0]
    np.testing.assert_allclose(theirs / theirs.max(), ours, atol=0.01)


def test_clax_export_layout(loop, tmp_path):
    invoke("export-clicks", loop / "sim_b", "--format", "clax", "--out", tmp_path / "b")
    table = pq.read_table(tmp_path / "b" / "clicks.parquet")
    sim = read_simulation(loop / "sim_b")[0]
    assert table.num_rows == sim.num_rows
    row = table.slice(0, 1).to_pylist()[0]
    assert row["positions"] == list(range(1, 16)) and sum(row["clicks"]) == 1 and all(row["mask"])
    assert row["clicks"].index(1.0) == sim.column("click_slot")[0].as_py() and min(row["query_doc_ids"]) >= 1
    # an item keeps its id across variants: the same (slate, item) pair is numbered alike in A and B
    invoke("export-clicks", loop / "sim_a", "--format", "clax", "--out", tmp_path / "a")
    a = pq.read_table(tmp_path / "a" / "clicks.parquet").slice(0, 1).to_pylist()[0]
    assert a["slate_id"] == row["slate_id"] and a["query_doc_ids"] == row["query_doc_ids"][::-1]


def test_compare_is_fast_on_ten_thousand_users(tmp_path):
    """Not a timing assertion: a scale check that the vectorised bootstrap handles 10k users (time printed)."""
    from fixate_rt.experiments.compare import bootstrap

    diff = np.random.default_rng(0).normal(0, 0.1, size=(10_000, 30))
    t0 = time.perf_counter()
    low, high, tv = bootstrap(diff, 2000, 0.95, 0)
    print(f"bootstrap 10k users x 30 keys x 2000 resamples: {time.perf_counter() - t0:.2f} s")
    assert low.shape == (30,) and np.all(low < high)
