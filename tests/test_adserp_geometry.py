"""Browser-free AdSERP geometry on small hand-made inputs: scroll stops, clipping, scaling, dwell, clicks, splits."""

import numpy as np
import pytest

from fixate_rt.data.adserp import geometry as geo
from fixate_rt.data.adserp.importer import Sample, Skip, resolve_click, split_sessions
from fixate_rt.data.badges import badge_box


def test_scale_is_screenshot_over_window_width():
    assert geo.CSS_TO_PX == pytest.approx(1280 / 1422)
    assert geo.VIEWPORT == (1280, 922)  # round(1024 · 1280 / 1422)


def test_scroll_stops_initial_dwell_gaps_and_click():
    # scrolls at 1000..1100 (a burst), a 900-ms pause, a burst 2000..2050, the click at 3000
    times = np.array([1000, 1050, 1100, 2000, 2050, 5000])  # 5000 is after the click: ignored
    offsets = np.array([10, 50, 100, 150, 200, 999])
    stops = geo.scroll_stops(times, offsets, t_begin=0, t_click=3000)
    assert [(s.t_start, s.t_end, s.offset) for s in stops] == [(0, 1000, 0), (1100, 2000, 100), (2050, 3000, 200)]


def test_scroll_stops_short_final_gap_is_not_a_stop():
    stops = geo.scroll_stops(np.array([1000, 1500]), np.array([100, 300]), t_begin=0, t_click=1700)
    assert [(s.t_start, s.t_end, s.offset) for s in stops] == [(0, 1000, 0), (1000, 1500, 100)]


def test_scroll_stops_without_scrolling_is_the_whole_trial():
    stops = geo.scroll_stops(np.array([]), np.array([]), t_begin=5, t_click=800)
    assert len(stops) == 1 and (stops[0].t_start, stops[0].t_end, stops[0].offset) == (5, 800, 0)


def test_clip_to_viewport_drops_and_clips():
    page = np.array([[0, 50, 100, 150],      # above the viewport at offset 200: dropped
                     [10, 180, 100, 260],    # straddles the top edge: clipped to [0, 60]
                     [10, 500, 1400, 1300],  # straddles bottom and right: clipped to 1280 × 922
                     [10, 1200, 20, 1210]])  # below: dropped
    keep, view = geo.clip_to_viewport(page, offset=200, viewport=(1280, 922))
    assert keep.tolist() == [1, 2]
    np.testing.assert_allclose(view, [[10, 0, 100, 60], [10, 300, 1280, 922]])


def test_inside_is_half_open():
    boxes = np.array([[0, 0, 10, 10]])
    assert geo.inside(np.array([[0, 0], [9.99, 9.99], [10, 5], [5, 10]]), boxes).tolist() == [[True, True, False, False]]


def test_fixation_dwell_counts_only_the_stop_and_the_box():
    stop = geo.ScrollStop(100, 200, 0)
    times = np.array([90, 100, 150, 199, 200])
    points = np.array([[5, 5], [5, 5], [15, 5], [5, 5], [5, 5]])
    durations = np.array([1000, 10, 20, 30, 4000])
    boxes = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [0, 0, 20, 10]])  # the last overlaps both
    np.testing.assert_allclose(geo.fixation_dwell(times, points, durations, boxes, stop), [40, 20, 60])


def test_cursor_dwell_holds_each_position_until_the_next_event():
    stop = geo.ScrollStop(100, 200, 0)
    times = np.array([50, 120, 170])  # at 50 in box 0 (held into the stop until 120), then box 1, then outside
    points = np.array([[5, 5], [15, 5], [50, 50]])
    boxes = np.array([[0, 0, 10, 10], [10, 0, 20, 10]])
    np.testing.assert_allclose(geo.cursor_dwell(times, points, boxes, stop), [20, 50])


def test_resolve_click_by_xpath_by_position_and_skip():
    meta = [{"kind": "organic", "rank": 3}, {"kind": "native_ad", "rank": 1}, {"kind": "dd_right", "rank": 1}]
    page = np.array([[100, 300, 600, 400], [100, 100, 600, 200], [700, 0, 900, 500]], dtype=float)
    s = geo.CSS_TO_PX
    assert resolve_click((0, 0, 0, "//*[@id='rso']/div[3]/div/a/h3"), meta, page, {1, 2, 3}) == (0, "xpath")
    assert resolve_click((0, 300 / s, 150 / s, "//*[@id='tads']/div[1]/a"), meta, page, {3}) == (1, "position")
    with pytest.raises(Skip, match="outside the viewport"):
        resolve_click((0, 0, 0, "//*[@id='rso']/div[1]/a"), meta, page, {1, 3})
    with pytest.raises(Skip, match="lands on no slot"):
        resolve_click((0, 50 / s, 50 / s, "//*[@id='logo']"), meta, page, {3})


def _sample(user):
    return Sample("t", user, None, None, np.zeros(1), np.zeros(1), 0)


@pytest.mark.parametrize("n, test, val", [(1, 0, 0), (2, 1, 0), (3, 1, 1), (10, 2, 1), (60, 12, 7)])
def test_split_sizes_per_user(n, test, val):
    splits = split_sessions([_sample("u")] * n + [_sample("v")] * 3, seed=4)
    mine = splits[:n]
    assert (mine.count("test"), mine.count("val"), mine.count("train")) == (test, val, n - test - val)
    assert split_sessions([_sample("u")] * n, seed=4) == splits[:n]  # users are split independently


def test_badge_goes_left_of_the_box_when_there_is_room():
    assert badge_box(np.array([162, 40, 700, 100]), (20, 24), (1280, 922)) == (138, 40, 158, 64)
    inside = badge_box(np.array([5, 910, 50, 922]), (20, 24), (1280, 922))  # no room left; clamped to the image
    assert inside == (6, 898, 26, 922)
