"""The `fixate-rt show` picture for docs/results.md: one test user's slate, the backbone's attention and the
FixATE-steered attention, each beside the user's fixations.

Runs after `benchmarks/train_synth.py --model slates-qwen3vl` (it reads that run's data and prompt bank). It
simulates the test pairs with and without the trained prompts through the CLI, picks the test (user, slate)
whose KL to the fixations improved most (the choice is printed and stated in the picture's caption: it is the
best case, not a typical one), runs `fixate-rt show` on both and stacks the two PNGs.

    python benchmarks/slates_show.py --run benchmarks/work/train_synth/<run folder>
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def cli(*args) -> None:
    cmd = [sys.executable, "-m", "fixate_rt", *map(str, args)]
    print("$ fixate-rt " + " ".join(map(str, args)))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True, help="a train_synth.py run folder (prompts.safetensors)")
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "work" / "train_synth" / "data")
    ap.add_argument("--model", default="slates-qwen3vl")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "slates_fixate_vs_backbone.png")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from fixate_rt import metrics as M
    from fixate_rt.data.join import load_inputs
    from fixate_rt.score import read_simulations

    work = Path(tempfile.mkdtemp(prefix="slates-show-"))
    sessions = pq.read_table(args.data / "sessions.parquet").to_pydict()
    test = [(u, s) for u, s, sp in zip(sessions["user_id"], sessions["slate_id"], sessions["split"]) if sp == "test"]
    pq.write_table(pa.table({"user_id": [u for u, _ in test], "slate_id": [s for _, s in test]}), work / "pairs.parquet")
    common = ["--model", args.model, "--users", args.data / "users.parquet", "--images", args.data / "slates",
              "--pairs", work / "pairs.parquet", "--device", "cpu"]
    cli("simulate", *common, "--out", work / "backbone")
    cli("simulate", *common, "--prompts", args.run / "prompts.safetensors", "--out", work / "fixate")
    base, steered = (read_simulations(work / name) for name in ("backbone", "fixate"))
    data = load_inputs(images=args.data / "slates", sessions=args.data / "sessions.parquet", signal="fixation")
    gain = {}
    for i, (u, s) in enumerate(zip(data.sessions.user_ids, data.sessions.slate_ids)):
        if (u, s) in base and data.dwell[i].sum() > 0:
            target = M.gaze_target(data.dwell[i], 1.0)
            gain[(u, s)] = M.kl(target, base[(u, s)].relevance) - M.kl(target, steered[(u, s)].relevance)
    (user, slate), best = max(gain.items(), key=lambda kv: kv[1])
    print(f"largest KL improvement on a test pair: {user} on {slate}, {best:.3f} nats "
          f"(median over {len(gain)} test pairs {np.median(list(gain.values())):+.3f})")
    panels = []
    for name, label in (("backbone", "backbone (no prompt)"), ("fixate", "FixATE (trained prompt)")):
        cli("show", "--sim", work / name, "--sessions", args.data / "sessions.parquet", "--label", label,
            "--images", args.data / "slates", "--out", work / f"show_{name}", "--user", user, "--slate", slate)
        panels.append(Image.open(next((work / f"show_{name}").glob("*.png"))).convert("RGB"))
    width = max(p.width for p in panels)
    canvas = Image.new("RGB", (width, sum(p.height for p in panels)), "white")
    y = 0
    for panel in panels:
        canvas.paste(panel, (0, y))
        y += panel.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out} (top: backbone without prompts; bottom: {user}'s FixATE prompt)")


if __name__ == "__main__":
    main()
