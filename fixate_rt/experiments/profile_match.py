"""Do simulated clicks follow the profiles? Share of clicks on posters of the user's top genre, against chance.

For synthetic data (`fixate-rt synth`), whose ``truth.json`` knows every poster's genre and every user's top and
preferred genres. Chance is what a click uniform over the slate's posters would give (the share of the slate's
posters that are of the user's top genre, averaged over the simulated rows), so a model that ignores the profile
scores chance and one that reads it scores above.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.tables import require_column
from ..errors import InputError, ValidationError, where
from ..io import read_utf8


def read_truth(data: Path) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """(user id → {top, preferred}, slate id → the genre of each slot) from ``data/truth.json``."""
    path = Path(data) / "truth.json"
    if not path.is_file():
        raise InputError(f"{path}: not found (profile-match needs the truth.json that `fixate-rt synth` writes)")
    try:
        truth = json.loads(read_utf8(path, "truth file"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON (line {exc.lineno})") from None
    try:
        listed = [u["user_id"] for u in truth["users"]]
        twice = next((u for u in listed if listed.count(u) > 1), None)
        if twice is not None:
            raise ValidationError(f"{path}, field 'users': user {twice!r} is listed twice")
        bad = next((u["user_id"] for u in truth["users"] if not isinstance(u["preferred_genres"], list)), None)
        if bad is not None:
            raise ValidationError(f"{path}, field 'users': user {bad!r} needs preferred_genres as a list of genres")
        users = {u["user_id"]: {"top": u["top_genre"], "preferred": list(u["preferred_genres"])} for u in truth["users"]}
        slates = {sid: [it["genre"] for it in s["items"]] for sid, s in truth["slates"].items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValidationError(f"{path}: not a synthetic truth file (missing or malformed field {exc})") from None
    for uid, u in users.items():
        if not (isinstance(uid, str) and isinstance(u["top"], str) and all(isinstance(g, str) for g in u["preferred"])):
            raise ValidationError(f"{path}, field 'users': user {uid!r} needs a string top_genre and preferred_genres")
    for sid, genres in slates.items():
        if not genres or not all(isinstance(g, str) for g in genres):
            raise ValidationError(f"{path}, field 'slates': slate {sid!r} needs items with a string genre each")
    return users, slates


def profile_match(data: Path, sim: Path) -> dict:
    """Click shares on top-genre and preferred-genre posters, and what uniform clicking would give."""
    from ..run.layout import read_simulation
    from ..score import simulated_pairs

    users, slates = read_truth(data)
    table, files = read_simulation(sim)  # read once: the checked distributions and the clicks come from it
    path = files.rows
    simulated = simulated_pairs(table, path)  # ids, finite p_click distributions
    cols = {name: require_column(table, path, name, types).to_pylist()
            for name, types in (("user_id", ("string",)), ("slate_id", ("string",)), ("click_slot", ("int",)))}
    top_hits, top_chance, pref_hits, pref_chance, top_mass = [], [], [], [], []
    for row, (uid, sid, click) in enumerate(zip(cols["user_id"], cols["slate_id"], cols["click_slot"])):
        for field, value, known in (("user_id", uid, users), ("slate_id", sid, slates)):
            if value not in known:
                raise ValidationError(f"{where(path, row, field)}: '{value}' is not in {Path(data) / 'truth.json'}")
        genres = np.array(slates[sid])
        p = simulated[(uid, sid)].p_click
        if p.size != genres.size:
            raise ValidationError(f"{where(path, row, 'p_click')}: {p.size} slots but slate '{sid}' has {genres.size} "
                                  "posters in truth.json")
        if click is None or not 0 <= click < genres.size:
            raise ValidationError(f"{where(path, row, 'click_slot')}: {click} is not one of the slate's {genres.size} slots")
        top = genres == users[uid]["top"]
        pref = np.isin(genres, users[uid]["preferred"])
        top_hits.append(top[click])
        top_chance.append(top.mean())
        pref_hits.append(pref[click])
        pref_chance.append(pref.mean())
        top_mass.append(float(p[top].sum()))
    if not top_hits:
        raise ValidationError(f"{path}: no simulated rows")
    return {"rows": len(top_hits),
            "top_genre": {"click_share": float(np.mean(top_hits)), "chance": float(np.mean(top_chance)),
                          "mean_p_click": float(np.mean(top_mass))},
            "preferred_genres": {"click_share": float(np.mean(pref_hits)), "chance": float(np.mean(pref_chance))}}
