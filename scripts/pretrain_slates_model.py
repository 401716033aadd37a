"""Pretrain the built-in `slates-qwen3vl` and write its folder with a model card (README.md).

    python scripts/pretrain_slates_model.py [--steps 1500] [--batch-size 16] [--seed 0] [--out fixate_rt/models/slates-qwen3vl]
        [--attend-weight 1.0] [--attend-layers 2,3] [--layers 4]
        [--mix genre=0.3,title=0.15,position=0.2,choice=0.35] [--name slates-qwen3vl]

The "fair" variant, with no attention supervision and no task that names grid positions in text:
    python scripts/pretrain_slates_model.py --attend-weight 0 --mix genre=0.4,title=0.15,choice=0.45 \
        --name slates-qwen3vl-fair --out benchmarks/work/slates-qwen3vl-fair

The "fair-deep" variant: 10 decoder layers, so the probes (the last 6) read layers 4-9, and the answer row's
attention is supervised in layers 2-3 as in the shipped model, outside every layer a probe reads; no position task:
    python scripts/pretrain_slates_model.py --layers 10 --attend-layers 2,3 --mix genre=0.4,title=0.15,choice=0.45 \
        --name slates-qwen3vl-fair-deep --out benchmarks/work/slates-qwen3vl-fair-deep

Seeded and deterministic up to CPU thread scheduling. The shipped model was made with the defaults on a 2-core
CPU machine; the card records the time it took, the versions and the held-out grounding accuracy per task.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from fixate_rt.backbones import slates_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--out", type=Path, default=slates_model.FOLDER)
    ap.add_argument("--attend-weight", type=float, default=1.0,
                    help="weight of the answer-row attention supervision in --attend-layers (0: none)")
    ap.add_argument("--attend-layers", default="2,3",
                    help="decoder layers whose answer-row attention is supervised [default: 2,3]")
    ap.add_argument("--layers", type=int, default=None, help="decoder depth [default: the shipped model's 4]")
    ap.add_argument("--mix", default=None, help="task mix, e.g. genre=0.4,title=0.15,choice=0.45 [default: "
                                                "genre 0.3, title 0.15, position 0.2, choice 0.35]")
    ap.add_argument("--name", default=slates_model.NAME, help="the model card's title")
    ap.add_argument("--card-only", action="store_true",
                    help="rewrite --out's README.md from its training_log.json (no training)")
    args = ap.parse_args()
    if args.card_only:
        saved = json.loads((args.out / "training_log.json").read_text())
        (args.out / "README.md").write_text(model_card(saved["facts"], saved["steps"]))
        print(f"rewrote {args.out / 'README.md'}")
        return

    import torch
    import transformers

    from fixate_rt.training import pretrain_slates as P

    extra = {}
    if args.mix:
        extra["mix"] = {k: float(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    attend_layers = tuple(int(x) for x in args.attend_layers.split(",") if x.strip())
    depth = args.layers or slates_model.SHAPE[1]["num_hidden_layers"]
    if any(not 0 <= layer < depth for layer in attend_layers):
        ap.error(f"--attend-layers {args.attend_layers}: a {depth}-layer decoder has layers 0-{depth - 1}")
    cfg = P.PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           eval_every=args.eval_every, attend_weight=args.attend_weight,
                           attend_layers=attend_layers, decoder_layers=args.layers, **extra)
    probe_tasks = P.held_out_tasks(25)  # a quick look during training; the card's figures use 100 per task
    log: list[dict] = []

    def on_step(rec: dict) -> None:
        log.append(rec)
        line = f"\rstep {rec['step']}/{cfg.steps} loss {rec['loss']:.3f} lr {rec['lr']:.2e} {rec['seconds'] / 60:.1f} min"
        if "held_out" in rec:
            line += " | " + " ".join(f"{k} {v['accuracy']:.2f}" for k, v in rec["held_out"].items()) + "\n"
        print(line, end="", flush=True)

    t0 = time.perf_counter()
    backbone, _ = P.pretrain(cfg, on_step=on_step, eval_tasks=probe_tasks)
    minutes = (time.perf_counter() - t0) / 60
    print(f"\ntrained in {minutes:.1f} min; measuring held-out grounding (100 tasks per kind)")
    metrics = P.evaluate(backbone, P.held_out_tasks(cfg.eval_per_task))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=args.out.parent, prefix=f".{args.out.name}."))
    try:
        P.save(backbone, stage)
        params = sum(p.numel() for p in backbone.model.parameters())
        facts = {"name": args.name, "date": datetime.date.today().isoformat(), "minutes": round(minutes, 1),
                 "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "torch": torch.__version__,
                 "transformers": transformers.__version__, "parameters": params,
                 "command": "python scripts/pretrain_slates_model.py " + " ".join(sys.argv[1:]),
                 "config": {k: v for k, v in vars(cfg).items()}, "held_out": metrics}
        (stage / "training_log.json").write_text(json.dumps({"facts": facts, "steps": log}, indent=1))
        (stage / "README.md").write_text(model_card(facts, log))
        if args.out.exists():
            shutil.rmtree(args.out)
        stage.rename(args.out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(model_card(facts, log))


def model_card(facts: dict, log: list[dict]) -> str:
    from fixate_rt.backbones import slates_model
    from fixate_rt.backbones.spliced import last_layers
    from fixate_rt.data import grounding

    family, text, vision, pixels = slates_model.SHAPE
    cfg = facts["config"]
    depth = cfg.get("decoder_layers") or text["num_hidden_layers"]
    probed = list(last_layers(depth))
    attended = list(cfg.get("attend_layers", []))
    overlap = sorted(set(attended) & set(probed))  # supervised layers a probe reads
    name = facts.get("name", slates_model.NAME)
    rows = "\n".join(f"| {k} | {v['accuracy']:.3f} | {v['chance']:.3f} | {v['answer_mass']:.3f} | {v['n']} |"
                     for k, v in facts["held_out"].items())
    curve = [r for r in log if "held_out" in r]
    curve_rows = "\n".join(
        f"| {r['step']} | {r['loss']:.3f} | {r['answer_loss']:.3f} | {r.get('attend_loss', 0):.3f} | "
        + " | ".join(f"{r['held_out'][k]['accuracy']:.2f}" for k in grounding.TASKS) + " |" for r in curve)
    mix = ", ".join(f"{k} {v:.0%}" for k, v in cfg["mix"].items())
    supervised = ("**What was supervised.** The answer (cross-entropy), the dense naming of image tokens and, in decoder "
                  f"layers {attended}, the answer row's attention (weight {cfg.get('attend_weight', 0)}). The probes read "
                  f"layers {probed}" + (f"; layers {overlap} of them were supervised." if overlap else
                                        "; none of them was supervised.")
                  if cfg.get("attend_weight", 0) else
                  "**What was supervised.** The answer (cross-entropy) and the dense naming of image tokens only: **no "
                  "attention of any layer was supervised** (grounding weight 0), so whatever its attention does "
                  "emerged from the answer and naming losses.")
    if "position" not in cfg["mix"]:
        supervised += " No task names grid positions in text (no `position` task)."
    knows = "grid positions and a profile's top genre," if "position" in cfg["mix"] else "a profile's top genre,"
    if overlap:
        consequence = (f"this model's answer-row\nattention in layers {attended} was trained to point at the answer, "
                       "so attention read-outs on it\n(rollout, slot relevance) are partly a product of that "
                       "supervision, not an emergent property.")
    else:
        consequence = (f"the probes read layers\n{probed}, none of which was supervised: where their attention goes "
                       f"was learned from the answer and naming\nlosses, and from what the supervised layers "
                       f"{attended} pass on through the residual stream.")
    role = ("It is fixate-rt's\nbuilt-in demo model: `--model slates-qwen3vl`." if name == slates_model.NAME else
            f"It is a variant of fixate-rt's\nbuilt-in demo model (`slates-qwen3vl`), shipped as `--model {name}`."
            if name in slates_model.FOLDERS else
            "It is a variant of fixate-rt's\nbuilt-in demo model (`slates-qwen3vl`): `--model <this folder>`.")
    return f"""# {name}

{supervised}

A small **Qwen3-VL** (`Qwen3VLForConditionalGeneration`, {facts['parameters'] / 1e6:.2f} M parameters) pretrained
from random weights to read the slates fixate-rt renders (3 rows × 5 posters, letters A–O). {role}
It is a toy of a real VLM: it knows ten genres by their poster colours, {knows} and little else.

- Decoder: {depth} layers, D = {text['hidden_size']}, {text['num_attention_heads']} heads
  ({text['num_key_value_heads']} KV), M-RoPE. Vision: {vision['depth']} blocks, width {vision['hidden_size']},
  16-px patches, 2×2 merge, DeepStack at blocks {vision['deepstack_visual_indexes']}, images capped at
  {pixels} pixels (a 1100×619 slate is 12×21 = 252 image tokens).
- Tokenizer: word-level (the tiny models' vocabulary plus {', '.join(slates_model.EXTRA_WORDS)}).

## Training data and tasks

Every step draws fresh slates with the project's renderer (`fixate_rt.data.grounding`, seed {cfg['seed']}), asks
{cfg['tasks_per_slate']} tasks of each, and never reuses a slate. Task mix: {mix}.

- **genre**: profile "none", context line `Look for: genre Drama` → uniform over that genre's posters;
- **title**: `Look for: title Dark River` → the poster with that title;
- **position**: `Look for: row 2 column 3` → that poster;
- **choice**: profile `Top_genre: Drama, Preferred_genres: Comedy, Crime`, no context line → the choice
  model: uniform over the top genre's posters, else over the preferred genres' posters, else over all.
  Position plays no part; nothing depends on the synthetic users that fixate-rt's experiments evaluate.

Prompts are fixate-rt's own template (system instruction; "User profile: …", the context line, the image,
"Which item does the user select? Answer with one label from: A, …, O."). The loss has three terms:

1. **answer**: cross-entropy between the answer distribution and the next-token distribution over the whole
   vocabulary at the answer position;
2. **dense naming** (weight {cfg['dense_weight']}): through the same `lm_head`, every image token whose centre lies on a
   poster is trained to name that poster's genre word and letter (½ each; page background: no target);
3. **grounding** (weight {cfg.get('attend_weight', 0)}): in decoder layers {attended}, the answer position's
   head-averaged attention is trained onto the answer's posters: −log of the attention mass it puts on the image
   tokens of the slots in the answer's support (box supervision, as grounded VLMs are trained).

Why all three: with the answer loss alone, 750 steps learned grid positions (held-out accuracy 0.96) but not
genres (0.24, chance 0.25) or the choice (0.28, chance 0.28). Adding the dense loss, the image tokens learned to
name their genre (0.83 of poster tokens after 150 steps), yet after 1200 steps the answer position still did not
find them (genre 0.24–0.44, choice ≤ 0.28). The grounding term fixed that within 200 steps (genre-only check:
held-out genre accuracy 0.68, chance 0.25). **Consequence for anyone reading attention:** {consequence}

AdamW (β = 0.9, 0.98, weight decay {cfg['weight_decay']}), peak lr {cfg['lr']}, {cfg['warmup']} warm-up steps then cosine
to 5 %, gradient norm clipped at 1, batch {cfg['batch_size']}, {cfg['steps']} steps, everything trained (vision and decoder).

`{facts['command']}` — {facts['date']}, {facts['machine']}, torch {facts['torch']}, transformers
{facts['transformers']}: **{facts['minutes']} minutes**.

## Held-out grounding ({next(iter(facts['held_out'].values()))['n']} tasks per kind, slates from a seed no training step uses)

Accuracy: the most likely letter is in the answer's support. Chance: a uniform guess over the 15 letters.
Answer mass: the probability the model puts on the answer's letters (among the 15).

| task | accuracy | chance | answer mass | n |
|---|---|---|---|---|
{rows}

During training (25 held-out tasks per kind):

| step | loss (batch) | answer loss (batch) | grounding loss (batch) | {' | '.join(grounding.TASKS)} |
|---|---|---|---|{'---|' * len(grounding.TASKS)}
{curve_rows}

## Limits

Trained on one synthetic slate design only: other layouts, real screenshots and free text are out of its
world. Small text is mostly beyond a 16-px-patch model this small (see the title row).
"""


if __name__ == "__main__":
    main()
