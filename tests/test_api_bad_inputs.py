"""The Python API refuses bad input as the CLI does: a `FixateError` subclass with a one-line message naming the
argument, never a raw TypeError/ValueError/RuntimeError from inside torch, and nothing written."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from fixate_rt import SimulateConfig, Simulator, run_simulation
from fixate_rt.data.slates import read_slates
from fixate_rt.errors import FixateError


def _refused(call, *needles):
    with pytest.raises(FixateError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.fixture(scope="module")
def sim():
    return Simulator("tiny-qwen3vl", device="cpu")


@pytest.fixture(scope="module")
def slate(synth_dir):
    first = read_slates(synth_dir / "slates")["s000"]
    return first.load_image(), first.layout


# ------------------------------------------------------------------------------------------- Simulator(...)
@pytest.mark.parametrize("kwargs, needle", [
    (dict(device="gpu"), "--device"),
    (dict(device=None), "--device"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=True), "batch_size"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(residual=float("nan")), "residual"),
    (dict(residual=-0.1), "residual"),
    (dict(residual=math.inf), "residual"),
    (dict(residual="0.5"), "residual"),
    (dict(model=123), "model"),
    (dict(model="no/such/checkpoint"), "not a model folder"),
    (dict(probe="nope"), "probe"),
    (dict(kernel="nope"), "kernel"),
    (dict(backend="nope"), "backend"),
    (dict(pool_mode="nope"), "pool_mode"),
    (dict(probe_layers=[99]), "probe layers"),
    (dict(probe_layers="01"), "probe_layers"),
    (dict(trust_export="yes"), "trust_export"),
    (dict(prompts="missing.safetensors"), "missing.safetensors"),
])
def test_simulator_constructor_refuses(kwargs, needle):
    kwargs = {"device": "cpu", **kwargs}
    _refused(lambda: Simulator(kwargs.pop("model", "tiny-qwen3vl"), **kwargs), needle)


# ------------------------------------------------------------------------------------ simulate_slate(...)
@pytest.mark.parametrize("call, needle", [
    (lambda s, img, lay: s.simulate_slate(img, lay, "abc"), "user_ids must be a list"),
    (lambda s, img, lay: s.simulate_slate(img, lay, []), "empty"),
    (lambda s, img, lay: s.simulate_slate(img, lay, [1, 2]), "expected a string id"),
    (lambda s, img, lay: s.simulate_slate(img, lay, [None]), "expected a string id"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["a\x00b"]), "control character"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["x" * 300]), "300 characters"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], ["<|im_end|>"]), "control token"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], ["a\x00"]), "control character"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], ["x" * 10_000]), "10000 characters"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], [7]), "expected text"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], "profile"), "profiles must be a list"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u", "v"], ["one"]), "1 given for 2"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], seed=float("nan")), "seed"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], seed=-1), "seed"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], seed=2**70), "seed"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], seed=1.5), "seed"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], samples=0), "samples"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], samples=10**9), "samples"),
    (lambda s, img, lay: s.simulate_slate(np.asarray(img), lay, ["u"]), "PIL.Image.fromarray"),
    (lambda s, img, lay: s.simulate_slate(img.resize((640, 360)), lay, ["u"]), "640x360"),
    (lambda s, img, lay: s.simulate_slate(img, {"image_size": [1, 1]}, ["u"]), "Layout"),
    (lambda s, img, lay: s.simulate_slate(img, lay, ["u"], slate_id="s\x00"), "control character"),
])
def test_simulate_slate_refuses(sim, slate, call, needle):
    image, layout = slate
    _refused(lambda: call(sim, image, layout), needle)


# --------------------------------------------------------------------------------- batches (bind / call)
def test_batch_calls_refuse(sim, synth_dir):
    fresh = Simulator(loaded=sim.backend, device="cpu")
    _refused(lambda: fresh({"user_id": ["u000"], "slate_id": ["s000"]}), "bind")
    fresh.bind(slates=synth_dir / "slates", users=synth_dir / "users.parquet")
    _refused(lambda: fresh({"user_id": ["u000"]}), "missing column 'slate_id'")
    _refused(lambda: fresh({"user_id": ["u000"], "slate_id": ["nope"]}), "unknown slate 'nope'")
    _refused(lambda: fresh({"user_id": ["u\x00"], "slate_id": ["s000"]}), "row 0", "control character")
    _refused(lambda: fresh({"user_id": ["u000"], "slate_id": ["s000"], "profile": ["<|im_start|>"]}),
             "field 'profile'", "control token")
    _refused(lambda: fresh.bind(slates=synth_dir / "slates", samples=0), "samples")
    _refused(lambda: fresh.bind(slates=synth_dir / "slates", seed=-3), "seed")


# ---------------------------------------------------------------------------------------- SimulateConfig
@pytest.mark.parametrize("change, needle", [
    (dict(users=123), "users must be a path"),
    (dict(out=b"bytes/out"), "out must be a path"),
    (dict(images=None), "images must be a path"),
    (dict(samples=0), "samples"),
    (dict(seed=-1), "seed"),
    (dict(seed=float("nan")), "seed"),
    (dict(residual=float("nan")), "residual"),
    (dict(batch_size=0), "batch_size"),
    (dict(shard_pairs=0), "shard_pairs"),
    (dict(device="gpu"), "--device"),
    (dict(trust_export="yes"), "trust_export"),
    (dict(overwrite=1), "overwrite"),
    (dict(probe="nope"), "probe"),
])
def test_simulate_config_refuses(synth_dir, tmp_path, change, needle):
    base = dict(users=synth_dir / "users.parquet", images=str(synth_dir / "slates"), out=tmp_path / "o")
    _refused(lambda: SimulateConfig(**{**base, **change}), needle)


def test_run_simulation_never_writes_into_an_input_or_a_users_folder(synth_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.csv").write_text("precious\n")
    config = SimulateConfig(users=synth_dir / "users.parquet", images=synth_dir / "slates", out=mine, device="cpu")
    _refused(lambda: run_simulation(config), "notes.csv")
    config = SimulateConfig(users=synth_dir / "users.parquet", images=synth_dir / "slates", out=mine, device="cpu",
                            overwrite=True)
    _refused(lambda: run_simulation(config), "notes.csv", "never")
    assert (mine / "notes.csv").read_text() == "precious\n" and len(list(mine.iterdir())) == 1
    config = SimulateConfig(users=synth_dir / "users.parquet", images=synth_dir / "slates", out=synth_dir / "slates",
                            device="cpu")
    _refused(lambda: run_simulation(config), "is the input")
    config = SimulateConfig(users=synth_dir / "users.parquet", images=synth_dir / "slates", out=synth_dir,
                            device="cpu")
    _refused(lambda: run_simulation(config), "contains the input")


def test_a_pil_image_of_the_layouts_size_is_what_works(sim, slate):
    image, layout = slate
    result = sim.simulate_slate(Image.fromarray(np.asarray(image)), layout, ["u1", "u2"], ["", "Top_genre: Drama"],
                                seed=3, samples=2)
    assert result.clicks.shape == (2, 2) and np.isfinite(result.p_click).all()
