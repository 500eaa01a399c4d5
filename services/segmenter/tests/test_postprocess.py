"""Largest connected components and vertebra level consistency on canonical channel maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from segmenter.inference import postprocess
from segmenter.postprocess import enforce_level_order, keep_largest_components
from segmenter.spec import ModelSpec

LEVELS = [1, 2, 3, 4, 5]  # channels of five consecutive vertebrae, cranial first
HEIGHT = 10  # slices per vertebra, the last one a disc gap


def spine(channels: Sequence[int], slices: int = 60) -> npt.NDArray[np.uint8]:
    """Vertebral bodies stacked from the top (highest slice index = superior) downwards."""
    array = np.zeros((slices, 20, 20), np.uint8)
    for i, channel in enumerate(channels):
        top = slices - i * HEIGHT
        array[top - HEIGHT + 1:top, 5:15, 5:15] = channel
    return array


def test_a_consistent_spine_is_unchanged() -> None:
    array = spine(LEVELS)
    before = array.copy()
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, before)


def test_a_spine_that_starts_lower_keeps_its_levels() -> None:
    array = spine([3, 4, 5])
    before = array.copy()
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, before)


@pytest.mark.parametrize("network", [
    [1, 2, 2, 4, 5],  # one level given twice, the next skipped
    [1, 3, 2, 4, 5],  # two levels swapped
    [1, 2, 4, 4, 5],
])
def test_duplicated_skipped_and_swapped_levels_are_renumbered(network: list[int]) -> None:
    array = spine(network)
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, spine(LEVELS))


def test_the_offset_follows_the_majority_of_voxels() -> None:
    """Three vertebrae say levels 3-5 and the one above them says 1: it is level 2."""
    array = spine([1, 3, 4, 5])
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, spine([2, 3, 4, 5]))


def test_a_fragment_joins_the_vertebra_it_touches() -> None:
    array = spine(LEVELS)
    top = 60 - HEIGHT  # lowest two slices of the second vertebra say "third"
    array[top - HEIGHT + 1:top - HEIGHT + 3, 5:15, 5:15] = 3
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, spine(LEVELS))


def test_a_process_labelled_as_the_next_level_joins_its_vertebra() -> None:
    """A third of the second vertebra's size, behind it and touching only it, says "third" (a
    spinous process labelled as the vertebra below): large enough to pass for a vertebra
    against the median size, it would shift the levels above it by one. It joins the second."""
    array = spine(LEVELS)
    array[42:48, 15:20, 5:15] = 3
    enforce_level_order(array, LEVELS)
    expected = spine(LEVELS)
    expected[42:48, 15:20, 5:15] = 2
    assert np.array_equal(array, expected)


def test_a_vertebra_partly_labelled_as_the_next_level_stays_one_vertebra() -> None:
    """The upper part of one side of the last vertebra says "sixth": that piece's centroid is
    above the rest's, so as two vertebrae the piece would be the fifth and the rest the sixth."""
    array = spine([1, 2, 3, 4, 5])
    array[11:20, 5:15, 10:15] = 0
    array[14:20, 5:15, 10:15] = 6
    array[11:14, 5:15, 10:15] = 5
    expected = spine([1, 2, 3, 4, 5])
    enforce_level_order(array, [1, 2, 3, 4, 5, 6])
    assert np.array_equal(array, expected)


def test_a_compressed_vertebra_touching_its_neighbours_keeps_its_level() -> None:
    """The third vertebra has lost two thirds of its height and touches both neighbours: it is
    a vertebra, not a piece of either."""
    array = spine(LEVELS)
    array[31:41] = 0
    array[38:41, 5:15, 5:15] = 3
    array[31:38, 8:12, 8:12] = 3  # a narrow column down to the fourth vertebra
    array[30, 8:12, 8:12] = 4
    before = array.copy()
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, before)


def test_isolated_islands_are_removed() -> None:
    array = spine(LEVELS)
    array[0:2, 0:2, 0:2] = 2  # a speck far from the spine, labelled like a vertebra
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, spine(LEVELS))


def test_only_surplus_vertebrae_are_dropped() -> None:
    """Four vertebrae for three levels: the top one (a C7 labelled T1) goes."""
    array = spine([1, 1, 2, 3])
    enforce_level_order(array, [1, 2, 3])
    expected = spine([0, 1, 2, 3])
    assert np.array_equal(array, expected)


def test_a_vertebra_below_the_last_level_does_not_shift_the_others() -> None:
    """Levels 2-5 identified, then an S1 also labelled 5: it goes, nobody moves up a level."""
    array = spine([2, 3, 4, 5, 5])
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, spine([2, 3, 4, 5, 0]))


def test_a_smaller_vertebra_is_not_dropped_for_a_larger_namesake() -> None:
    """Two vertebrae both labelled 1, the upper one half cut off by the field of view."""
    array = spine([1, 1])
    array[-5:] = 0
    enforce_level_order(array, LEVELS)
    expected = spine([1, 2])
    expected[-5:] = 0
    assert np.array_equal(array, expected)


def test_a_small_upper_vertebra_is_not_a_fragment_of_the_larger_spine_below() -> None:
    """Vertebrae grow downwards (T1 a fifth of L5, as in a real spine): a T1 of which the
    network labels only a fifth as T1 is still a vertebra, and the C7 above, labelled T1 in
    full, is the surplus one that goes."""
    channels = [1, 1, 2, 3, 4, 5]  # C7 (labelled 1), then levels 1-5
    widths = [5, 5, 7, 9, 11, 12]  # in-plane edge of each body
    array = np.zeros((len(channels) * HEIGHT, 20, 20), np.uint8)
    for i, (channel, width) in enumerate(zip(channels, widths, strict=True)):
        top = array.shape[0] - i * HEIGHT
        array[top - HEIGHT + 1:top, 2:2 + width, 2:2 + width] = channel
    t1_top = array.shape[0] - HEIGHT
    array[t1_top - HEIGHT + 1:t1_top - 2, 2:7, 2:7] = 2  # most of T1 labelled as level 2
    expected = array.copy()
    expected[array.shape[0] - HEIGHT:] = 0
    expected[t1_top - HEIGHT + 1:t1_top, 2:7, 2:7] = 1
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, expected)


def test_stray_voxels_of_an_otherwise_absent_level_are_not_a_vertebra() -> None:
    """A few voxels beside the disc between the second and third vertebrae say level 7, of
    which (as of levels 6 and 8) there is nothing else: they are an island, not a vertebra
    that would push the levels below it down by one."""
    array = spine([1, 2, 3, 4])
    array[array.shape[0] - 2 * HEIGHT, 0:2, 0:2] = 7
    enforce_level_order(array, list(range(1, 9)))
    assert np.array_equal(array, spine([1, 2, 3, 4]))


def test_a_sliver_cut_by_the_top_slice_is_the_level_above() -> None:
    """The first slice cuts the vertebra above level 2: one slice of it is in view, a twelfth of
    a vertebra, and the network calls it level 2 again. It is level 1, not an island."""
    array = spine([1, 2, 3, 4, 5])
    array[51:59] = 0
    array[59, 5:15, 5:15] = 2
    enforce_level_order(array, LEVELS)
    expected = spine([1, 2, 3, 4, 5])
    expected[51:59] = 0
    assert np.array_equal(array, expected)


def test_a_process_cut_by_the_top_slice_behind_the_top_body_is_the_level_above() -> None:
    """The first slice cuts the tip of the spinous process of the vertebra above level 2 (it
    slopes down behind level 2's body, past its own). The network calls level 2's posterior
    element and a column of it that reaches the top slice "level 1": both belong to level 2,
    the first directly, the column through a speck labelled 3, and the tip is level 1."""
    array = spine([0, 2, 3, 4, 5])
    array[41:50, 15:18, 8:12] = 1  # level 2's posterior element
    array[50, 5:8, 5:8] = 3  # a speck on level 2's body ...
    array[51:60, 5:8, 5:8] = 1  # ... under a column up to the top slice
    array[59, 16:19, 8:12] = 1  # the tip, behind level 2's body, in line with its process
    enforce_level_order(array, LEVELS)
    expected = spine([0, 2, 3, 4, 5])
    expected[41:50, 15:18, 8:12] = 2
    expected[50:60, 5:8, 5:8] = 2
    expected[59, 16:19, 8:12] = 1
    assert np.array_equal(array, expected)


def test_a_sliver_cut_by_the_bottom_slice_is_the_level_below() -> None:
    array = spine([1, 2, 3, 4], slices=50)
    array[0, 5:15, 5:15] = 4
    array[0, 5:7, 5:7] = 3  # a fragment of it with another label joins it
    enforce_level_order(array, LEVELS)
    expected = spine([1, 2, 3, 4], slices=50)
    expected[0, 5:15, 5:15] = 5
    assert np.array_equal(array, expected)


def test_a_sliver_beyond_the_first_level_is_dropped() -> None:
    """A cut C7 above a T1 in view: the model has no level for it."""
    array = spine([0, 1, 2, 3, 4])
    array[59, 5:15, 5:15] = 1
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, spine([0, 1, 2, 3, 4]))


@pytest.mark.parametrize("speck", [
    (slice(0, 1), slice(5, 6), slice(5, 7)),  # two voxels under the spine: noise
    (slice(0, 1), slice(16, 20), slice(16, 20)),  # beside the spine, not below it
    (slice(5, 6), slice(5, 15), slice(5, 15)),  # below the spine but not cut by the border
])
def test_specks_that_are_not_a_cut_vertebra_are_removed(speck: tuple[slice, ...]) -> None:
    array = spine([1, 2, 3, 4], slices=50)
    array[speck] = 4
    enforce_level_order(array, LEVELS)
    assert np.array_equal(array, spine([1, 2, 3, 4], slices=50))


def test_keep_largest_components_removes_smaller_pieces_only() -> None:
    array = np.zeros((10, 10, 10), np.uint8)
    array[0:4, 0:4, 0:4] = 6
    array[7:9, 7:9, 7:9] = 6
    array[0:2, 7:9, 0:2] = 7
    keep_largest_components(array, [6, 7])
    assert (array == 6).sum() == 64 and (array[7:9, 7:9, 7:9] == 0).all()
    assert (array == 7).sum() == 8


def test_postprocess_keeps_every_lesion(make_spec: Callable[..., ModelSpec]) -> None:
    spec = make_spec(["vertebra_T1", "vertebra_T2", "sacrum", "lesion_lytic"])
    array = spine([1, 2], slices=40)
    array[1:5, 5:15, 5:15] = 3  # sacrum
    array[1:2, 0:2, 0:2] = 3  # a stray sacrum speck
    array[32:34, 6:8, 6:8] = 4  # two lesions inside T1
    array[32:34, 11:13, 11:13] = 4
    postprocess(array, spec)
    assert (array == 3).sum() == 4 * 10 * 10
    assert (array == 4).sum() == 2 * 2 * 2 * 2
