"""The visitor sketch: exact while small, HyperLogLog within its documented bound beyond."""

import random

import pytest

from analytics.sketch import EXACT_LIMIT, M, VisitorSketch, max_registers


def _sketch(ids):
    s = VisitorSketch()
    for i in ids:
        s.add(i)
    return s


def test_small_sets_are_exact_through_bytes_and_merges():
    a, b = _sketch(range(0, 300)), _sketch(range(200, 500))
    a2 = VisitorSketch.from_bytes(a.to_bytes())
    a2.merge(VisitorSketch.from_bytes(b.to_bytes()))
    assert a2.exact and a2.count() == 500


def test_lazy_sketch_reports_the_stored_exact_count_and_merges_like_the_decoded_one():
    big = _sketch(range(10_000))
    lazy = VisitorSketch.lazy(big.to_bytes(), 10_000)
    assert lazy.count() == 10_000
    total = VisitorSketch()
    total.merge(lazy)
    total.merge(_sketch(range(5)))
    assert not total.exact
    assert abs(total.count() - 10_000) <= 0.049 * 10_000


def test_register_max_is_bytewise():
    rng = random.Random(3)
    a = bytes(rng.randrange(0, 54) for _ in range(M))
    b = bytes(rng.randrange(0, 54) for _ in range(M))
    merged = max_registers(int.from_bytes(a, "little"), int.from_bytes(b, "little"))
    assert merged.to_bytes(M, "little") == bytes(map(max, a, b))


@pytest.mark.parametrize("n", [EXACT_LIMIT + 1, 5_000, 50_000, 400_000])
def test_estimates_stay_within_three_standard_errors(n):
    """1.04/sqrt(4096) = 1.63 % standard error; ±4.9 % holds for 99.7 % of sets."""
    rng = random.Random(n)
    ids = [rng.getrandbits(63) for _ in range(n)]
    halves = [_sketch(ids[: n // 2]), _sketch(ids[n // 3 :])]  # overlapping parts, merged
    merged = VisitorSketch()
    for part in halves:
        merged.merge(VisitorSketch.from_bytes(part.to_bytes()))
    assert abs(merged.count() - n) <= 0.049 * n


def test_relative_error_over_many_sets_matches_the_documented_standard_error():
    rng = random.Random(7)
    errors = []
    for _ in range(30):
        ids = [rng.getrandbits(63) for _ in range(20_000)]
        errors.append((VisitorSketch.from_bytes(_sketch(ids).to_bytes()).count() - 20_000) / 20_000)
    rms = (sum(e * e for e in errors) / len(errors)) ** 0.5
    assert rms < 0.0163 * 1.5
