"""The pictures say what they show: each figure is checked for its labelled parts (panel names, legends, slot
labels, p-values, intervals), recorded as it is saved."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


@pytest.fixture
def saved(monkeypatch):
    """Every matplotlib figure saved during the test, with all its text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure
    import matplotlib.text

    figures = []
    original = matplotlib.figure.Figure.savefig

    def record(self, *args, **kwargs):
        figures.append(SimpleNamespace(figure=self, texts=[t.get_text() for t in self.findobj(matplotlib.text.Text)]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    return figures


def test_show_names_its_panels_and_draws_the_simulated_clicks(saved, synth_dir, tmp_path):
    from fixate_rt.data.slates import read_slates
    from fixate_rt.viz import render_pair

    slate = read_slates(synth_dir / "slates")["s000"]
    S = slate.layout.n_slots
    relevance = np.full(S, 1.0 / S)  # spread out: must stay visible on the √ scale
    p_click = np.full(S, 1.0 / S)
    dwell = np.zeros(S)
    dwell[[1, 5]] = [300.0, 900.0]
    render_pair(tmp_path / "a.png", slate, "u000", relevance, p_click, dwell, clicked=5,
                simulated_clicks=[2, 2, 7], run_label="FixATE")
    texts = " | ".join(saved[-1].texts)
    for part in ("FixATE: slot relevance", "user u000: fixation distribution", "observed click (F)",
                 "2× sim", "1× sim", "the 3 simulated clicks", "√ scale (both panels)"):
        assert part in texts, part
    render_pair(tmp_path / "b.png", slate, "u000", relevance, p_click, dwell, clicked=5, scale="per-panel")
    assert "√ scale (left panel)" in " | ".join(saved[-1].texts)
    assert (tmp_path / "a.png").stat().st_size > 10_000


def _effect(**kw):
    return {"share_a": 0.1, "share_b": 0.12, "diff": 0.02, "low": -0.01, "high": 0.05, "p_wilcoxon": 0.043, **kw}


def test_compare_names_positions_by_slot_label_and_shows_p_values(saved, tmp_path):
    from fixate_rt.experiments.reports import plot_compare

    result = {"a": "runs/original", "b": "runs/shuffled", "users": 12, "level": 0.95,
              "overall": {"total_variation": 0.2, "low": 0.1, "high": 0.3},
              "per_item": [_effect(item="s000/A"), _effect(item="s000/B", diff=-0.03, low=-0.06, high=0.0)],
              "per_position": [_effect(position=k, label=lab) for k, lab in enumerate("ABC")]}
    plot_compare(tmp_path / "compare.png", result)
    fig = saved[-1].figure
    position_axis = fig.axes[1]
    assert [t.get_text() for t in position_axis.get_yticklabels()] == ["A", "B", "C"]
    assert "p=0.043" in saved[-1].texts and "by position (slot label)" in saved[-1].texts


def test_position_bias_is_a_line_plot_with_intervals_and_keeps_the_overlay(saved, tmp_path):
    from fixate_rt.experiments.reports import plot_position_curves

    n = 4
    result = {"positions": n, "sessions": 40, "configurations": 8, "attention": [0.4, 0.3, 0.2, 0.1],
              "click_share": [0.4, 0.3, 0.2, 0.1], "logit": {"theta": [1, 0.7, 0.5, 0.3]},
              "pbm": {"theta_relative": [1, 0.8, 0.6, 0.4]}, "cascade": {"examination": [1, 0.6, 0.4, 0.2]},
              "intervals": {"level": 0.95, "resamples": 100,
                            **{m: {"low": [0.5] * n, "high": [1.0] * n} for m in ("logit", "pbm", "cascade")}}}
    plot_position_curves(tmp_path / "pb.png", result, ["A", "B", "C", "D"])
    ax = saved[-1].figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C", "D"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("logit" in t for t in legend) and any("PBM" in t for t in legend) and any("cascade" in t for t in legend)
    assert len(ax.collections) == 3  # one interval band per click model
    assert "95% bootstrap intervals over 100 refits" in ax.get_title()


def test_learning_curve_has_whole_epochs_and_a_legend_beside_the_curves(saved, tmp_path):
    from fixate_rt.training.run import learning_curve

    history = [{"epoch": e, "train_loss": 1.0 / e, "train_attn": 0.5 / e, "val_score": 0.1 * e} for e in (1, 2, 3)]
    learning_curve(tmp_path / "lc.png", [SimpleNamespace(seed=7, history=history, best_epoch=3)])
    fig = saved[-1].figure
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert ticks and all(t.lstrip("−-").isdigit() for t in ticks), ticks
        anchor = ax.get_legend().get_bbox_to_anchor().transformed(ax.transAxes.inverted())
        assert anchor.x0 >= 1.0  # outside the axes: never over a curve
