"""The drift forecast: per-camera error growth from consecutive measurements of one serving model."""

from __future__ import annotations

import pytest

from controller.planner.drift import MAX_GROWTH, Measurement, error_growth, forecast


def test_growth_from_two_windows_of_the_same_model() -> None:
    history = [Measurement(2, 1, 0.90), Measurement(3, 1, 0.82)]
    assert error_growth(history) == pytest.approx(1.8)
    assert forecast(0.82, 1.8) == pytest.approx(0.676)
    assert forecast(0.95, 1.8) == pytest.approx(0.91)  # a fresh model drifts by the same factor


def test_no_estimate_across_a_swap_or_a_gap_keeps_the_last_one() -> None:
    assert error_growth([Measurement(2, 1, 0.9), Measurement(3, 2, 0.6)], previous=1.7) == 1.7
    assert error_growth([Measurement(1, 1, 0.9), Measurement(3, 1, 0.6)], previous=1.3) == 1.3
    assert error_growth([Measurement(3, 1, 0.6)], previous=1.2) == 1.2


def test_growth_is_bounded() -> None:
    assert error_growth([Measurement(0, 0, 0.80), Measurement(1, 0, 0.90)]) == 1.0  # improving: no drift
    assert error_growth([Measurement(0, 0, 0.99), Measurement(1, 0, 0.50)]) == MAX_GROWTH
    assert error_growth([Measurement(0, 0, 1.00), Measurement(1, 0, 0.99)]) == 1.0  # tiny errors: noise
    assert forecast(0.2, 3.0) == 0.0
    assert forecast(0.8, 0.5) == pytest.approx(0.8)  # never forecast an improvement


def test_a_fresh_model_gives_an_estimate_from_its_training_window() -> None:
    """After a swap the new model's held-out accuracy on the window it learned from, then its accuracy on
    the next window's data, are two consecutive measurements of one model."""
    history = [Measurement(2, 1, 0.90), Measurement(3, 1, 0.80), Measurement(3, 2, 0.95), Measurement(4, 2, 0.85)]
    assert error_growth(history) == pytest.approx(MAX_GROWTH)
    assert error_growth(history[:3], previous=1.4) == 1.4  # the swap alone: no estimate yet
