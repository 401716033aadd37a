"""Grounding tasks on rendered slates: what the built-in ``slates-qwen3vl`` model was pretrained on.

Every task is one (slate, prompt, answer distribution) triple, phrased through the run's ordinary template
(`fixate_rt.template`), so the model sees at simulation time exactly the text it was trained on:

| task | profile | context line (before the image) | answer distribution over the 15 slots |
|---|---|---|---|
| ``genre`` | none | ``Look for: genre Drama`` | uniform over the slots of that genre |
| ``title`` | none | ``Look for: title Dark River`` | the slot with that title |
| ``position`` | none | ``Look for: row 2 column 3`` | that slot (rows 1–3, columns 1–5) |
| ``choice`` | ``Top_genre: Drama, Preferred_genres: X, Y`` | none | the choice model below |

**Choice model** (profile-conditioned choice). A profile is a top genre and two preferred genres, drawn
uniformly without replacement from the ten genres. The user selects uniformly among the slots whose genre is
the top genre; if there is none, uniformly among the slots of a preferred genre; if there is none either,
uniformly among all 15. Position plays no part, and nothing here depends on the synthetic users of
`fixate_rt.data.synth` (their row/column biases, their seeds): the model learns "pick what the profile
names", not any planted user's gaze.

Slates are drawn exactly as `fixate_rt.data.synth` draws them (three row genres, 70 % of a row's posters of
the row's genre) from a random stream that is seeded separately (``seed`` here is not the synth seed), and
rendered by the same renderer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import layout as geo
from .render import render_slate
from .synth_vocab import GENRES, TITLE_WORDS

TASKS = ("genre", "title", "position", "choice")
N_SLOTS = geo.ROWS * geo.COLS
# Words the grounding context lines add to a tokenizer's vocabulary.
WORDS = ("Look", "for", "genre", "title", "row", "column")


@dataclass(frozen=True)
class Task:
    """One training or test example. ``target`` float [15]: the answer distribution over slots (sums to 1)."""

    kind: str
    slate_seed: int
    items: tuple[dict, ...]
    row_genres: tuple[str, ...]
    profile: str
    context: str
    target: np.ndarray

    def render(self):
        """The slate image (deterministic for the task's slate seed)."""
        return render_slate(list(self.items), list(self.row_genres), np.random.default_rng(self.slate_seed))


def draw_slate(rng: np.random.Generator) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    """15 posters (title, genre) and the three row genres, as `fixate_rt.data.synth` draws a slate."""
    rows = [GENRES[g] for g in rng.choice(len(GENRES), size=geo.ROWS, replace=False)]
    items = []
    for slot in range(N_SLOTS):
        row, _ = geo.slot_row_col(slot)
        genre = rows[row] if rng.random() < 0.7 else GENRES[rng.integers(len(GENRES))]
        items.append({"title": " ".join(rng.choice(TITLE_WORDS, size=2, replace=False)), "genre": genre})
    return tuple(items), tuple(rows)


def profile_text(top: str, preferred: tuple[str, str]) -> str:
    """The synthetic data's profile format: ``Top_genre: Drama, Preferred_genres: Comedy, Crime``."""
    return f"Top_genre: {top}, Preferred_genres: {', '.join(preferred)}"


def choice_distribution(genres: list[str], top: str, preferred: tuple[str, ...]) -> np.ndarray:
    """The choice model: uniform over top-genre slots, else over preferred-genre slots, else over all. [S]"""
    for wanted in ((top,), tuple(preferred)):
        hit = np.array([g in wanted for g in genres], dtype=np.float64)
        if hit.any():
            return hit / hit.sum()
    return np.full(len(genres), 1.0 / len(genres))


def _uniform_over(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float64) / mask.sum()


def make_task(kind: str, rng: np.random.Generator, slate_seed: int) -> Task:
    """Draw a slate (from ``slate_seed``) and one task of ``kind`` on it (choices from ``rng``)."""
    items, rows = draw_slate(np.random.default_rng([slate_seed, 1]))
    genres = [it["genre"] for it in items]
    profile, context = "none", ""
    if kind == "genre":
        genre = genres[int(rng.integers(N_SLOTS))]  # a genre that is on the slate
        target, context = _uniform_over(np.array(genres) == genre), f"Look for: genre {genre}"
    elif kind == "title":
        titles = [it["title"] for it in items]
        slot = int(rng.integers(N_SLOTS))
        target, context = _uniform_over(np.array(titles) == titles[slot]), f"Look for: title {titles[slot]}"
    elif kind == "position":
        slot = int(rng.integers(N_SLOTS))
        row, col = geo.slot_row_col(slot)
        target, context = np.eye(N_SLOTS)[slot], f"Look for: row {row + 1} column {col + 1}"
    elif kind == "choice":
        top, *preferred = (GENRES[g] for g in rng.choice(len(GENRES), size=3, replace=False))
        profile = profile_text(top, tuple(preferred))
        target = choice_distribution(genres, top, tuple(preferred))
    else:
        raise ValueError(f"unknown task {kind!r}; one of {TASKS}")
    return Task(kind, slate_seed, items, rows, profile, context, target)


def task_stream(seed: int, mix: dict[str, float], tasks_per_slate: int = 1):
    """An endless stream of tasks, kinds drawn with the ``mix`` weights, ``tasks_per_slate`` in a row on each slate.

    Slate seeds are derived from ``seed`` (``seed · 1000003 + n``), so streams with different seeds never share
    a slate; consecutive tasks on one slate let a trainer run the vision tower once for them."""
    rng = np.random.default_rng([seed, 0])
    kinds = list(mix)
    weights = np.array([mix[k] for k in kinds], dtype=np.float64)
    n = 0
    while True:
        for _ in range(tasks_per_slate):
            kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
            yield make_task(kind, rng, seed * 1_000_003 + n)
        n += 1


def chance_accuracy(task: Task) -> float:
    """The accuracy of a uniform guess over the slots: the target's support share (its mass on argmax slots)."""
    return float((task.target > 0).mean())
