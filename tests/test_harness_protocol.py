"""The pure parts of the backbone harness (``benchmarks/data/few_label.py``) on synthetic labels: few-label
draws are stratified and seeded, no spatial block is on both sides of a split, and the interval maths.
No data folder, no model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmarks.data.few_label import all_label_folds, few_label_split, mean_interval, overlap, spatial_blocks


def synthetic(classes: int = 4, per_class: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and spatial groups of chips scattered over two UTM zones (5 km blocks)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"c{i}" for i in range(classes)], per_class)
    x, y = rng.uniform(0, 40_000, len(labels)), rng.uniform(0, 40_000, len(labels))
    crs = np.where(rng.random(len(labels)) < 0.5, "EPSG:32632", "EPSG:32633")
    return labels, spatial_blocks(x, y, crs, 5_000)


def test_spatial_blocks_group_by_square_and_crs():
    x = np.array([100.0, 900.0, 1100.0, 100.0, -10.0])
    y = np.array([100.0, 999.0, 100.0, 100.0, 100.0])
    crs = ["EPSG:32632", "EPSG:32632", "EPSG:32632", "EPSG:32633", "EPSG:32632"]
    groups = spatial_blocks(x, y, crs, 1_000)
    assert groups[0] == groups[1]  # one 1 km block
    assert len({groups[0], groups[2], groups[3], groups[4]}) == 4  # next block east, another zone, west of 0
    with pytest.raises(ValueError):
        spatial_blocks(x, y, crs, 0)


@pytest.mark.parametrize("n", [5, 10])
def test_few_label_draw_is_stratified_seeded_and_holds_blocks_out(n):
    labels, groups = synthetic()
    draws = [few_label_split(labels, groups, n, seed) for seed in range(5)]
    for draw in draws:
        assert draw is not None
        train, test = draw
        assert len(np.unique(train)) == len(train)
        assert dict(zip(*np.unique(labels[train], return_counts=True), strict=True)) == {f"c{i}": n for i in range(4)}
        assert not set(groups[train]) & set(groups[test])  # never one block on both sides
        assert not set(train) & set(test)
        assert 0.2 < len(test) / len(labels) < 0.5
    again = few_label_split(labels, groups, n, 3)
    assert again is not None and all(np.array_equal(a, b) for a, b in zip(again, draws[3], strict=True))
    assert not np.array_equal(draws[0][0], draws[1][0])  # type: ignore[index]


def test_few_label_draw_refuses_too_few_and_all_takes_the_training_side():
    labels, groups = synthetic(per_class=12)
    assert few_label_split(labels, groups, 20, 0) is None
    draw = few_label_split(labels, groups, None, 0)
    assert draw is not None
    train, test = draw
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
    assert not set(groups[train]) & set(groups[test])


def test_all_label_folds_test_every_chip_once_with_blocks_whole():
    labels, groups = synthetic()
    folds = all_label_folds(labels, groups, 5, seed=0)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(labels)))
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])


def test_mean_interval_is_student_t_over_draws():
    values = [0.5, 0.6, 0.7, 0.8]
    mean, low, high = mean_interval(values)
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert mean == pytest.approx(0.65)
    assert (low, high) == pytest.approx((0.65 - half, 0.65 + half))
    assert half == pytest.approx(3.182446 * 0.1290994 / 2, rel=1e-5)
    assert mean_interval([0.4, 0.4, 0.4]) == pytest.approx((0.4, 0.4, 0.4))
    single = mean_interval([0.7])
    assert single[0] == 0.7 and np.isnan(single[1]) and np.isnan(single[2])


def test_overlap():
    assert overlap((0.5, 0.4, 0.6), (0.65, 0.59, 0.7))
    assert not overlap((0.5, 0.4, 0.6), (0.75, 0.61, 0.8))
    assert not overlap((0.75, 0.61, 0.8), (0.5, 0.4, 0.6))
    assert overlap((0.5, float("nan"), float("nan")), (0.9, 0.85, 0.95))
