"""The paper's protocols: the reference's prompt templates token for token, template bookkeeping in banks and
runs, the per-seed split, the dual-signal subset and the training presets."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fixate_rt import template as T
from fixate_rt.cli import app
from fixate_rt.config import Template
from fixate_rt.data.layout import LETTERS
from fixate_rt.run.layout import read_simulation
from fixate_rt.training.presets import per_seed_split, resolve

pytestmark = pytest.mark.slow  # left out of the quick subset: bash scripts/test.sh -m "not slow"

runner = CliRunner()

# The Qwen3-VL-Instruct chat template's user-turn rendering (image items as the vision block, text items verbatim,
# no default system turn) and generation prompt: the part of the model's chat_template.json the reference used.
QWEN3VL_CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}"
    "{%- endfor %}{{- '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
PROFILE = "Top_genre: Drama, Preferred_genres: Comedy, Horror"  # the reference's profile format


def _reference_qwen_ids(tokenizer, user_text: str, n_pads: int) -> list[int]:
    """As the reference builds it: processor.apply_chat_template([image, text]), pads expanded, tokenised whole."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user_text}]}]
    text = tokenizer.apply_chat_template(messages, chat_template=QWEN3VL_CHAT_TEMPLATE, tokenize=False,
                                         add_generation_prompt=True)
    text = text.replace("<|image_pad|>", "<|image_pad|>" * n_pads)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _reference_internvl_ids(tokenizer, system: str, user_text: str, n_pads: int) -> list[int]:
    """As the reference builds it: InternVL's conversation template (MPT style: system turn, user turn
    "<image>\\n" + text, open assistant turn), then <image> -> <img><IMG_CONTEXT>×n</img>, tokenised whole."""
    query = (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<image>\n{user_text}<|im_end|>\n"
             f"<|im_start|>assistant\n")
    query = query.replace("<image>", "<img>" + "<IMG_CONTEXT>" * n_pads + "</img>", 1)
    return tokenizer(query, add_special_tokens=False)["input_ids"]


def test_reference_template_token_ids_qwen(tiny):
    proc = tiny.processor
    proc.template = Template.reference
    try:
        ids, types = proc.encode(PROFILE, LETTERS, 7)
    finally:
        proc.template = Template.fixate_rt
    expected = _reference_qwen_ids(proc.tokenizer, f"{PROFILE}\n\n{T.REFERENCE_RECGAZE_INSTRUCTION}", 7)
    assert ids == expected
    assert proc.tokenizer.unk_token_id not in ids  # every word of the reference's text is a known token
    assert sum(types) == 7 and ids[types.index(1)] == proc.image_pad_id


def test_reference_adserp_template_token_ids_qwen(tiny):
    proc = tiny.processor
    proc.template = Template.reference_adserp
    try:
        ids, _ = proc.encode("gender: Female", LETTERS[:4], 5, context="Search query: Google search results")
    finally:
        proc.template = Template.fixate_rt
    expected = _reference_qwen_ids(proc.tokenizer, f"Search query: Google search results\n\n{T.REFERENCE_ADSERP_INSTRUCTION}", 5)
    assert ids == expected and proc.tokenizer.unk_token_id not in ids


def test_reference_template_token_ids_internvl():
    from fixate_rt.backbones import load

    backbone = load("tiny-internvl", device="cpu")
    backbone.use_template("reference")
    ids, types = backbone.processor.encode(PROFILE, LETTERS, 9)
    expected = _reference_internvl_ids(backbone.processor.tokenizer, T.REFERENCE_RECGAZE_SYSTEM_INTERNVL,
                                       f"{PROFILE}\n\n{T.REFERENCE_RECGAZE_INSTRUCTION}", 9)
    assert ids == expected and sum(types) == 9


def test_the_project_template_is_unchanged():
    assert T.render("Top_genre: Drama", ["A", "B"], "ctx") == (
        f"<|im_start|>system\n{T.INSTRUCTION}<|im_end|>\n<|im_start|>user\nUser profile: Top_genre: Drama\nctx\n"
        "<image>\nWhich item does the user select? Answer with one label from: A, B.<|im_end|>\n"
        "<|im_start|>assistant\n")


def _bank(path, template: str):
    from fixate_rt.prompts import SoftPromptBank

    bank = SoftPromptBank.init(["u000", "u001"], 2, 3, 64, backbone="tiny-qwen3vl")
    bank.template = template
    bank.save(path)
    return path


def _simulate(synth_dir, out, *extra):
    return runner.invoke(app, ["simulate", "--users", str(synth_dir / "users.parquet"), "--images",
                               str(synth_dir / "slates"), "--out", str(out), "--device", "cpu", "--model", "tiny-qwen3vl",
                               *map(str, extra)])


def test_a_bank_trained_under_another_template_is_refused(tmp_path, synth_dir):
    bank = _bank(tmp_path / "ref.safetensors", "reference")
    refused = _simulate(synth_dir, tmp_path / "no", "--prompts", bank)
    assert refused.exit_code == 2 and not (tmp_path / "no").exists()
    assert "trained with --template reference but this run uses --template fixate-rt" in refused.stderr
    ok = _simulate(synth_dir, tmp_path / "yes", "--prompts", bank, "--template", "reference")
    assert ok.exit_code == 0, ok.output
    info = json.loads((tmp_path / "yes" / "run.json").read_text())
    assert info["template"] == "reference" and info["config"]["template"] == "reference"
    forced = _simulate(synth_dir, tmp_path / "forced", "--prompts", bank, "--allow-template-mismatch")
    assert forced.exit_code == 0 and json.loads((tmp_path / "forced" / "run.json").read_text())["template"] == "fixate-rt"


def test_the_template_changes_the_clicks(tmp_path, synth_dir):

    a = _simulate(synth_dir, tmp_path / "a")
    b = _simulate(synth_dir, tmp_path / "b", "--template", "reference")
    assert a.exit_code == b.exit_code == 0
    pa_, pb = (np.array(read_simulation(tmp_path / x)[0].column("p_click").to_pylist())
               for x in ("a", "b"))
    assert np.abs(pa_ - pb).max() > 1e-4


def test_per_seed_split_sizes_and_seeds():
    users = ["a"] * 10 + ["b"] * 2 + ["c"]
    split = per_seed_split(users, 42)
    a = split[:10]
    assert (a.count("test"), a.count("val"), a.count("train")) == (2, 1, 7)  # round(0.2·10); max(1, round(0.15·8))
    assert sorted(split[10:12]) == ["test", "train"] and split[12] == "train"  # every user keeps a train session
    assert per_seed_split(users, 42) == split and per_seed_split(users, 123)[:10] != a


def test_intersect_keeps_sessions_with_both_signals(tmp_path):
    from fixate_rt.data.join import dwell_of
    from fixate_rt.data.tables import Sessions

    s = Sessions(("u", "u", "u"), ("s", "s", "s"), ("train",) * 3,
                 (np.array([5.0, 0]), np.array([1.0, 2]), np.array([0.0, 3])),
                 (np.array([0.0, 0]), np.array([1.0, 0]), np.array([2.0, 0])), np.array([0, 1, 0]))
    fix = dwell_of(s, tmp_path / "s.parquet", "intersect")
    assert [f.tolist() for f in fix] == [[0.0, 0.0], [1.0, 2.0], [0.0, 3.0]]


def test_preset_resolution_order():
    values, sources = resolve("adserp", {"warmup_steps": 7})
    assert values["warmup_steps"] == 7 and sources["warmup_steps"] == "option"
    assert (values["topk_js_k"], values["selection"], values["split_mode"], values["max_tiles"]) == (3, "js", "per-seed", 4)
    assert values["seeds"] == (42, 123, 456, 789, 101112) and sources["seeds"] == "preset adserp"
    assert values["template"] == "fixate-rt" and sources["template"] == "default"
    values, _ = resolve("recgaze", {})
    assert (values["topk_js_k"], values["warmup_steps"], values["selection"], values["max_tiles"]) == (5, 30, "composite", 12)
