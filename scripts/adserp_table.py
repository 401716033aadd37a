"""Per-trial markdown table of an AdSERP run (scripts/adserp_demo.sh): slots, click, fixation vs model shares."""

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from fixate_rt.run.layout import read_simulation

out = Path(sys.argv[1])
sessions = {r["slate_id"]: r for r in pq.read_table(out / "data" / "sessions.parquet").to_pylist()}
sims = {r["slate_id"]: r for r in read_simulation(out / "sim")[0].to_pylist()}
print("| trial | slots | clicked (kind) | fixation share per slot | model slot relevance "
      "| model p_click of the clicked slot | simulated click |")
print("|---|---|---|---|---|---|---|")
for trial in sorted(sessions):
    s, m = sessions[trial], sims[trial]
    layout = json.loads((out / "data" / "slates" / f"{trial}.json").read_text())
    labels = [slot["label"] for slot in layout["slots"]]
    total = sum(s["fixation_ms"])
    fix = " ".join(f"{lab}:{v / total:.2f}" for lab, v in zip(labels, s["fixation_ms"]))
    rel = " ".join(f"{lab}:{v:.2f}" for lab, v in zip(labels, m["slot_relevance"]))
    c = s["clicked_slot"]
    kind = layout["slots"][c]["item"]["kind"]
    print(f"| {trial} | {len(labels)} | {labels[c]} ({kind}) | {fix} | {rel} | {m['p_click'][c]:.3f} | {m['click_label']} |")
metrics = json.loads((out / "score" / "metrics.json").read_text())
print()
print(json.dumps({k: v for k, v in metrics.items() if k in ("n_samples", "micro", "summary")}, indent=1)[:3000])
