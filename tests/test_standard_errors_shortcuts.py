"""The shortcuts that make the split standard errors cheaper give what the plain forms give, exactly (the
end-to-end equality with the dense float64 reference is tests/test_standard_errors_engine.py): the list
merge's sort against ``np.lexsort``, the bit-sliced same halves/quarters and their k-th listed rows
against part indices compared and counted, the cross pass's part words against the 64-column
membership test of every pair, on tie-heavy values.
"""

import numpy as np
import pytest

from largeemb.kernels.cross_splits import part_words
from largeemb.kernels.membership import inside
from largeemb.kernels.neighbours import _by_key_then_index
from largeemb.kernels.splits import COLUMN_BITS, kth_in_parts, packed, part_index, same_words, split_words


def test_merge_order_is_lexsorts_by_key_then_index():
    rng = np.random.default_rng(0)
    for _ in range(300):
        rows = int(rng.integers(0, 400))
        key = rng.integers(0, int(rng.integers(1, 60)), rows).astype(np.uint64)  # many repeated keys
        idx = rng.integers(0, int(rng.integers(1, 8)), rows)  # and repeated (key, index) pairs
        order, expected = _by_key_then_index(key, idx), np.lexsort((idx, key))
        # Entries tied in both are one entry to the merge (its row, distance bits and candidate): they
        # may come in any order, every other entry where lexsort puts it.
        np.testing.assert_array_equal(np.sort(order), np.arange(rows))
        np.testing.assert_array_equal(key[order], key[expected])
        np.testing.assert_array_equal(idx[order], idx[expected])


def _same_columns(words: np.ndarray) -> np.ndarray:
    """(..., 64) bools in part_index's column order from same_words' words."""
    return ((words[..., None] >> COLUMN_BITS.astype(np.uint64)) & np.uint64(1)).astype(bool)


def test_same_words_equal_comparing_part_indices():
    rng = np.random.default_rng(1)
    n = 5000
    own = np.arange(300)
    listed = rng.integers(0, n, (300, 40))
    listed[:, :3] = own[:, None]  # the row itself: same part everywhere
    words = split_words(listed.ravel(), n, 7).reshape(listed.shape)
    same = _same_columns(same_words(words ^ split_words(own, n, 7)[:, None]))
    expected = part_index(words.ravel()).reshape(300, 40, 64) == part_index(split_words(own, n, 7))[:, None, :]
    np.testing.assert_array_equal(same, expected)
    assert same[:, :3].all() and not same.all()
    assert not same_words(np.full(5, ~np.uint64(0))).any()  # no row listed: no part shared


@pytest.mark.parametrize("width", [1, 7, 64, 200])
def test_kth_in_parts_equals_counting_each_part(width):
    """Against a plain running count per part: positions of the k-th, and parts short of k; with lists
    long enough (200) that the bit-sliced counts wrap several times."""
    rng = np.random.default_rng(width)
    rows, ks = 150, (1, 3, 5, 10)
    density = rng.uniform(0.02, 0.6, (rows, 1, 1))  # sparse rows leave some parts short of k
    bits = rng.random((rows, width, 64)) < density
    packed_bits = np.packbits(bits[..., np.argsort(COLUMN_BITS)], axis=2, bitorder="little")
    same = np.ascontiguousarray(packed_bits).view("<u8")[..., 0]
    seen = np.cumsum(_same_columns(same), axis=1)  # (rows, width, 64)
    for k, (at, short) in zip(ks, kth_in_parts(same, ks)):
        np.testing.assert_array_equal(short, seen[:, -1, :] < k)
        expected = np.where(seen[:, -1, :] < k, 0, np.argmax(seen >= k, axis=1))
        np.testing.assert_array_equal(at, expected)
    assert any(short.any() and not short.all() for _, short in kth_in_parts(same, ks))


@pytest.mark.parametrize("eps_scale", [0.0, 1e-3])
@pytest.mark.parametrize("inclusive", [False, True])
def test_part_words_equal_the_64_column_test_of_every_pair(eps_scale, inclusive):
    """Radii on a coarse grid (ties with the pairs' values, equal smallest and largest radii, inf) and
    pairs inside, between and beyond: the shortcut's words are the plain ``inside`` of all 64 columns."""
    rng = np.random.default_rng(2)
    rows, pairs = 50, 4000
    radii = np.sqrt(rng.integers(1, 9, (rows, 64)).astype(np.float64))
    radii[0] = 2.0  # every part radius equal
    radii[1, 5] = np.inf  # a part with fewer than k rows
    of_row = rng.integers(0, rows, pairs)
    exact = np.sqrt(rng.integers(0, 12, pairs).astype(np.float64))  # ties with the radii
    eps = eps_scale * rng.random(pairs)
    d32 = exact * exact + eps * rng.uniform(-1, 1, pairs)
    words = part_words(d32, of_row, radii, eps, lambda sel: exact[sel], inclusive)
    plain = packed(inside(d32, radii[of_row], eps, lambda sel: exact[sel], inclusive))
    np.testing.assert_array_equal(words, plain)
    assert (words == ~np.uint64(0)).any() and (words == 0).any() and ((words != 0) & (words != ~np.uint64(0))).any()
