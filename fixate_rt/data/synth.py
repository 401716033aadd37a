"""Synthetic RecGaze-like data with a known generative model (docs/synthetic.md).

Per user u, slate s and slot k (row r, column c of the 3×5 grid):

    logit[u,s,k] = prior(r, c) + row_bias[u,r] + col_bias[u,c] + genre_weight·affinity(u, genre[s,k])
                   + latent_weight·[genre[s,k] = latent_genre[u]] + ε
    prior(r, c)  = −row_decay·r − col_decay·c              (shared F-pattern / golden-triangle reading prior)
    affinity     = 1 for the user's top genre, ½ for a preferred genre, 0 otherwise
    π[u,s]       = softmax(logit[u,s])                      (the user's true attention over slots)
    fixation_ms  = total · Dirichlet(concentration·π), shares below `min_share` set to 0; total ~ LogNormal
    cursor_ms    = like fixations but from ½π + ½·uniform with a lower concentration (noisier)
    click        ~ Categorical(softmax(click_sharpness · log(fixation share + 1e-3)))

So gaze is personal and stable (row/column biases and genre tastes are fixed per user) and the click is
strongly predicted by the fixations. Everything is deterministic for a seed.

Two variants (docs/synthetic.md). ``profile`` (the default, `SynthConfig()`): strong positional habits and row
genres, no latent taste, so a per-user slot prior captures much of a user's gaze. ``latent``
(`SynthConfig.latent()`): weak positional habits, posters' genres independent of their row, and a hidden
favourite genre per user that the profile text never names, over 80 slates with 20 test slates: what a user
looks at depends on the slate's content and on a taste only their gaze reveals.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import SynthVariant
from ..errors import ValidationError
from ..io import write_json
from ..outputs import check_output
from . import layout as geo
from .render import render_slate
from .slates import write_layout
from .staging import staged_dataset
from .synth_vocab import GENRES, TITLE_WORDS
from .tables import Sessions, Users, write_sessions, write_users

MAX_USERS = 100_000
MAX_SLATES = 100_000
VARIANTS = tuple(v.value for v in SynthVariant)


@dataclass(frozen=True)
class SynthConfig:
    n_users: int = 30
    n_slates: int = 40
    seed: int = 0
    train_frac: float = 0.7
    val_frac: float = 0.15
    row_decay: float = 0.6
    col_decay: float = 0.35
    bias_scale: float = 0.8
    genre_weight: float = 1.5
    logit_noise: float = 0.3
    concentration: float = 20.0
    cursor_concentration: float = 4.0
    min_share: float = 0.015
    click_sharpness: float = 3.0
    total_fixation_ms: float = 4000.0
    total_cursor_ms: float = 1500.0
    variant: str = "profile"
    row_genre_prob: float = 0.7  # a poster takes its row's genre with this probability, else a random genre
    latent_weight: float = 0.0  # weight of the hidden favourite genre (variant "latent" only)

    @classmethod
    def latent(cls, **overrides) -> SynthConfig:
        """The ``latent`` variant: gaze driven by content and a hidden genre taste, not by slot position."""
        values = dict(variant="latent", n_slates=80, train_frac=0.6, val_frac=0.15, row_decay=0.15, col_decay=0.1,
                      bias_scale=0.25, genre_weight=1.0, latent_weight=2.0, row_genre_prob=0.0)
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValidationError(f"--variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.variant == "profile" and self.latent_weight:
            raise ValidationError("latent_weight is a parameter of the 'latent' variant (SynthConfig.latent())")
        for name, low, high in (("n_users", 2, MAX_USERS), ("n_slates", 3, MAX_SLATES), ("seed", 0, 2**63 - 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                option = {"n_users": "--users", "n_slates": "--slates", "seed": "--seed"}[name]
                raise ValidationError(f"{option} must be an integer in {low}..{high}, got {value!r}")


@dataclass(frozen=True)
class SynthData:
    users: Users
    sessions: Sessions
    true_attention: np.ndarray  # [U, M, 15] π, the ground-truth attention of every (user, slate)
    user_params: list[dict]
    slate_items: list[list[dict]]
    slate_ids: tuple[str, ...]


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def _make_users(cfg: SynthConfig, rng: np.random.Generator) -> tuple[Users, list[dict]]:
    ids, profiles, params = [], [], []
    for u in range(cfg.n_users):
        top, *preferred = rng.choice(len(GENRES), size=3, replace=False)
        p = {
            "user_id": f"u{u:03d}",
            "top_genre": GENRES[top],
            "preferred_genres": [GENRES[g] for g in preferred],
            "row_bias": rng.normal(0, cfg.bias_scale, geo.ROWS).round(4).tolist(),
            "col_bias": rng.normal(0, cfg.bias_scale, geo.COLS).round(4).tolist(),
        }
        if cfg.variant == "latent":  # drawn only here, so the profile variant's random stream is unchanged
            others = [g for g in range(len(GENRES)) if g != top and g not in preferred]
            p["latent_genre"] = GENRES[others[rng.integers(len(others))]]  # never written into the profile
        ids.append(p["user_id"])
        profiles.append(f"Top_genre: {p['top_genre']}, Preferred_genres: {', '.join(p['preferred_genres'])}")
        params.append(p)
    return Users(tuple(ids), tuple(profiles)), params


def _make_slates(cfg: SynthConfig, rng: np.random.Generator) -> tuple[list[list[dict]], list[list[str]]]:
    items, row_genres = [], []
    for _ in range(cfg.n_slates):
        rows = [GENRES[g] for g in rng.choice(len(GENRES), size=geo.ROWS, replace=False)]
        slate = []
        for slot in range(geo.ROWS * geo.COLS):
            row, _ = geo.slot_row_col(slot)
            genre = rows[row] if rng.random() < cfg.row_genre_prob else GENRES[rng.integers(len(GENRES))]
            title = " ".join(rng.choice(TITLE_WORDS, size=2, replace=False))
            slate.append({"title": title, "genre": genre})
        items.append(slate)
        row_genres.append(rows)
    return items, row_genres


def _affinity(params: dict, genre: str) -> float:
    if genre == params["top_genre"]:
        return 1.0
    return 0.5 if genre in params["preferred_genres"] else 0.0


def generate(cfg: SynthConfig) -> tuple[SynthData, list[list[str]]]:
    """Draw users, slates and sessions (no files). Returns the data and each slate's row genres."""
    rng = np.random.default_rng(cfg.seed)
    users, params = _make_users(cfg, rng)
    items, row_genres = _make_slates(cfg, rng)
    slate_ids = tuple(f"s{s:03d}" for s in range(cfg.n_slates))
    order = rng.permutation(cfg.n_slates)  # content-disjoint split: by slate, never by session
    # Every split gets at least one slate (needs ≥ 3 slates); train takes the rest.
    n_val = max(1, int(round(cfg.val_frac * cfg.n_slates)))
    n_test = max(1, int(round((1 - cfg.train_frac - cfg.val_frac) * cfg.n_slates)))
    n_train = cfg.n_slates - n_val - n_test
    if n_train < 1:
        raise ValueError(f"synth needs at least 3 slates for train/val/test, got {cfg.n_slates}")
    split_of = {}
    for rank, s in enumerate(order):
        split_of[s] = "train" if rank < n_train else ("val" if rank < n_train + n_val else "test")

    rows, cols = np.divmod(np.arange(geo.ROWS * geo.COLS), geo.COLS)
    prior = -cfg.row_decay * rows - cfg.col_decay * cols
    S = len(rows)
    pi = np.zeros((cfg.n_users, cfg.n_slates, S))
    out = {"user": [], "slate": [], "split": [], "fix": [], "cur": [], "click": []}
    for u, p in enumerate(params):
        bias = np.asarray(p["row_bias"])[rows] + np.asarray(p["col_bias"])[cols]
        for s in range(cfg.n_slates):
            aff = np.array([_affinity(p, it["genre"]) for it in items[s]])
            hidden = np.array([it["genre"] == p.get("latent_genre") for it in items[s]], dtype=np.float64)
            logit = (prior + bias + cfg.genre_weight * aff + cfg.latent_weight * hidden
                     + rng.normal(0, cfg.logit_noise, S))
            pi[u, s] = _softmax(logit)
            share = rng.dirichlet(cfg.concentration * pi[u, s] + 1e-6)
            share[share < cfg.min_share] = 0.0
            share /= share.sum()
            fix = np.round(share * cfg.total_fixation_ms * rng.lognormal(0, 0.3), 1)
            cshare = rng.dirichlet(cfg.cursor_concentration * (0.5 * pi[u, s] + 0.5 / S) + 1e-6)
            cshare[cshare < 2 * cfg.min_share] = 0.0
            cur = np.round(cshare / max(cshare.sum(), 1e-12) * cfg.total_cursor_ms * rng.lognormal(0, 0.5), 1)
            click = rng.choice(S, p=_softmax(cfg.click_sharpness * np.log(share + 1e-3)))
            for key, val in zip(out, (p["user_id"], slate_ids[s], split_of[s], fix, cur, int(click))):
                out[key].append(val)
    sessions = Sessions(tuple(out["user"]), tuple(out["slate"]), tuple(out["split"]), tuple(out["fix"]),
                        tuple(out["cur"]), np.asarray(out["click"], dtype=np.int64))
    return SynthData(users, sessions, pi, params, items, slate_ids), row_genres


def _session_vs_prior(share: np.ndarray) -> float:
    """Mean Pearson correlation of each session's shares [S] with the user's mean over their other slates
    (share [U, M, S])."""
    U, M, _ = share.shape
    total = share.sum(1)
    values = [np.corrcoef(share[u, m], (total[u] - share[u, m]) / (M - 1))[0, 1] for u in range(U) for m in range(M)]
    return float(np.nanmean(values))


def statistics(data: SynthData) -> dict:
    """Measured properties of a generated set (what docs/synthetic.md reports)."""
    fix = np.stack(data.sessions.fixation_ms)
    share = fix / fix.sum(1, keepdims=True)
    clicks = data.sessions.clicked_slot
    top_fix = np.argmax(fix, axis=1)
    U, M = len(data.users), len(data.slate_ids)
    per_user = share.reshape(U, M, -1)
    # Split-half stability: a user's mean slot profile on even slates vs odd slates, correlated, versus the
    # same correlation between different users.
    even, odd = per_user[:, 0::2].mean(1), per_user[:, 1::2].mean(1)
    corr = np.corrcoef(np.concatenate([even, odd]))[:U, U:]
    rng = np.random.default_rng(0)
    cursor = np.stack(data.sessions.cursor_ms)
    cshare = cursor / np.maximum(cursor.sum(1, keepdims=True), 1e-12)
    return {
        "sessions": int(len(clicks)),
        "users": U,
        "slates": M,
        "splits": {s: int(sum(x == s for x in data.sessions.splits)) for s in ("train", "val", "test")},
        "click_is_most_fixated": float(np.mean(clicks == top_fix)),
        "click_in_top3_fixated": float(np.mean([c in np.argsort(-f, kind="stable")[:3] for c, f in zip(clicks, fix)])),
        "click_uniform_chance": 1.0 / fix.shape[1],
        "gaze_split_half_corr_same_user": float(np.mean(np.diag(corr))),
        "gaze_split_half_corr_other_users": float(np.mean(corr[~np.eye(U, dtype=bool)])),
        # What a per-user slot prior can capture of one session: its fixation shares against the user's mean
        # shares over the other slates, correlated, averaged over sessions.
        "session_corr_with_user_slot_prior": _session_vs_prior(per_user),
        "mean_fixated_slots": float(np.mean((fix > 0).sum(1))),
        "mean_total_fixation_ms": float(fix.sum(1).mean()),
        "cursor_fixation_cosine": float(np.mean(
            (share * cshare).sum(1) / (np.linalg.norm(share, axis=1) * np.linalg.norm(cshare, axis=1) + 1e-12))),
        "permuted_click_is_most_fixated": float(np.mean(rng.permutation(clicks) == top_fix)),
    }


def write_synth(out: Path, cfg: SynthConfig, progress=None, *, overwrite: bool = False) -> dict:
    """Generate and write users.parquet, slates/ (PNG + layout.json), sessions.parquet, truth.json.

    Built in a staging folder, validated, then swapped onto ``out`` (`staging.staged_dataset`): a rerun with
    ``overwrite`` replaces the previous synthetic data whole, and a folder holding anything else is refused."""
    check_output(Path(out), "synth", overwrite=overwrite)
    data, row_genres = generate(cfg)
    with staged_dataset(Path(out), "synth", overwrite=overwrite) as stage:
        slates_dir = stage / "slates"
        slates_dir.mkdir()
        write_layout(slates_dir / "layout.json", geo.recgaze_layout())
        for s, slate_id in enumerate(data.slate_ids):
            img = render_slate(data.slate_items[s], row_genres[s], np.random.default_rng([cfg.seed, s]))
            img.save(slates_dir / f"{slate_id}.png", format="PNG")  # the stage is atomic as a whole
            if progress is not None:
                progress(s + 1, len(data.slate_ids))
        write_users(stage / "users.parquet", data.users)
        write_sessions(stage / "sessions.parquet", data.sessions)
        stats = statistics(data)
        write_json(stage / "truth.json", {
            "config": asdict(cfg), "statistics": stats, "users": data.user_params,
            "slates": {sid: {"row_genres": row_genres[s], "items": data.slate_items[s]}
                       for s, sid in enumerate(data.slate_ids)},
        })
        with open(stage / "true_attention.npy", "wb") as fh:
            np.save(fh, data.true_attention.astype(np.float32))
    return stats


def dumps_stats(stats: dict) -> str:
    return json.dumps(stats, indent=2)
