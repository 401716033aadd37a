"""The paper's protocols: what the reference code sets per data set, as named training presets.

`resolve(preset, given)` merges, for each protocol setting, in this order: an option the user gave, the
preset's value, the project's default. Every resolved value is printed by `train` and recorded in
train_config.json and metrics.json with where it came from.

| setting | project default | ``recgaze`` | ``adserp`` |
|---|---|---|---|
| top-k JS k | 5 | 5 | 3 |
| λ warm-up steps W | 30 | 30 | 20 |
| checkpoint selection | composite | composite (val, TF, micro) | lowest micro JS |
| early stopping (patience, evaluations) | 5 | 5 | none |
| InternVL max tiles | the model's | 12 | 4 |
| split | the sessions file's | the sessions file's (content-disjoint) | re-drawn per seed, per user |
| seeds | 42, 123, 456, 789, 2024 | 42, 123, 456, 789, 2024 | 42, 123, 456, 789, 101112 |

The prompt template is not part of a preset: `--template reference` reproduces the reference's RecGaze
wording, `--template reference-adserp` its AdSERP wording, which asks for "the number of the clicked area"
while the AdSERP importer draws letter badges (the reference's numbers were never visible), so it is a
deliberate choice, not a default.
"""

from __future__ import annotations

from ..config import Preset, Selection, SplitMode, parse_choice

SETTINGS = ("topk_js_k", "warmup_steps", "selection", "patience", "max_tiles", "split_mode", "seeds", "template")
SELECTIONS = tuple(s.value for s in Selection)
SPLIT_MODES = tuple(s.value for s in SplitMode)

PROJECT_DEFAULTS: dict[str, object] = {
    "topk_js_k": 5, "warmup_steps": 30, "selection": "composite", "patience": 5, "max_tiles": None,
    "split_mode": "data", "seeds": (42, 123, 456, 789, 2024), "template": "fixate-rt",
}
PRESETS: dict[Preset, dict[str, object]] = {
    Preset.none: {},
    Preset.recgaze: {
        "topk_js_k": 5, "warmup_steps": 30, "selection": "composite", "patience": 5, "max_tiles": 12,
        "split_mode": "data", "seeds": (42, 123, 456, 789, 2024),
    },
    Preset.adserp: {
        "topk_js_k": 3, "warmup_steps": 20, "selection": "js", "patience": None, "max_tiles": 4,
        "split_mode": "per-seed", "seeds": (42, 123, 456, 789, 101112),
    },
}


def resolve(preset: Preset | str, given: dict[str, object]) -> tuple[dict[str, object], dict[str, str]]:
    """(values, source of each: "option", "preset <name>" or "default"). ``given`` holds the options the user
    set (None = not given)."""
    preset = parse_choice(Preset, preset, "preset")
    values, sources = {}, {}
    for name in SETTINGS:
        if given.get(name) is not None:
            values[name], sources[name] = given[name], "option"
        elif name in PRESETS[preset]:
            values[name], sources[name] = PRESETS[preset][name], f"preset {preset.value}"
        else:
            values[name], sources[name] = PROJECT_DEFAULTS[name], "default"
    return values, sources


def per_seed_split(user_ids: list[str], seed: int) -> list[str]:
    """The reference's AdSERP split, re-drawn for every seed: for each user (sessions in file order), shuffle
    with ``RandomState(seed)``; test = max(1, round(0.2·n)) but at most n − 1; of the rest, val = max(1,
    round(0.15·m)) with ``RandomState(seed + 1000)``, but at most m − 1 (a user keeps one training session).

    Returns the split of every session, in the order given.
    """
    import numpy as np

    by_user: dict[str, list[int]] = {}
    for i, u in enumerate(user_ids):
        by_user.setdefault(u, []).append(i)
    split = ["train"] * len(user_ids)
    for u in sorted(by_user):
        rows = list(by_user[u])
        n = len(rows)
        order = np.random.RandomState(seed).permutation(n)
        n_test = min(max(1, round(0.2 * n)), n - 1)
        test, rest = [rows[j] for j in order[:n_test]], [rows[j] for j in order[n_test:]]
        m = len(rest)
        order = np.random.RandomState(seed + 1000).permutation(m)
        n_val = min(max(1, round(0.15 * m)), m - 1)
        for i in test:
            split[i] = "test"
        for j in order[:n_val]:
            split[rest[j]] = "val"
    return split
