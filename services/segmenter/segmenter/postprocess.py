"""Post-processing of a label map of output channels: connected components and vertebra levels.

Both work on canonical ``(z, y, x)`` arrays (slice index increasing towards Superior) holding
network channel indices, in place, inside the bounding box of the structures concerned.
Connectivity is face adjacency (``scipy.ndimage.label``'s default).

Level consistency rule
    Every connected component of a vertebra channel is a candidate. A component of at least
    ``FRAGMENT_FRACTION`` of the median vertebra (over levels, each level's largest component)
    is a vertebra. A smaller one is a vertebra too when it touches none of those and reaches
    ``FRAGMENT_FRACTION`` of its level's reference size: the median of the largest components of
    that level and the levels next to it, at least ``SMALLEST_LEVEL_SHARE`` of the median
    vertebra. Vertebral size grows about fivefold from T1 to L5, so against the median alone a
    partly labelled T1 was a fragment and a C7 labelled T1 took its place; a piece of a
    vertebra that the network gave the next level's label touches the rest of it, and stays a
    fragment. A fragment touching a vertebra joins it, any other becomes background. The
    vertebrae left are ordered cranio-caudally by centroid and given consecutive levels
    ``o, o+1, ...``; ``o`` is the offset with the best agreement: the sum over vertebrae of the
    share of each vertebra's voxels whose network label equals its new level (so every vertebra
    weighs the same, whatever its size or how much of it is in view). Ties go to the offset
    keeping more vertebrae, then to the one nearest the network's own. Vertebrae the chosen
    offset puts outside the model's levels are dropped: a C7 or S1 labelled like its neighbour,
    next to the levels the network identified. A correct map is unchanged but for stray islands;
    a duplicated, skipped or swapped level is fixed.

Vertebrae cut by the field of view
    A vertebra that the first or last slice cuts may show only a sliver: a piece of its body or
    of its processes far below any size rule. A component that is not a vertebra by the rule
    above, touches no vertebra, touches the cranial (caudal) face of the volume, lies beyond
    every vertebra in that direction, overlaps the end vertebra in the axial plane (it continues
    the spine) and reaches ``PARTIAL_FRACTION`` of the median vertebra is the next vertebra,
    partly in view: the largest such component at each end takes the level above (below) the
    end vertebra's, when the model has one, and does not vote on the offset. Its fragments join
    it as a vertebra's do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

#: Components below this fraction of the median vertebra size are fragments, unless they touch
#: no larger vertebra and reach this fraction of their own level's reference size.
FRAGMENT_FRACTION = 0.25
#: Floor of a level's reference size, as a share of the median over all levels (a T1 is about
#: half the median vertebra of T1-L5).
SMALLEST_LEVEL_SHARE = 0.4
#: Smallest piece of a vertebra cut by the field of view that is kept, as a share of the median
#: vertebra (a few hundred voxels of a CT; smaller specks at the border are noise).
PARTIAL_FRACTION = 0.005

Box = tuple[slice, ...]


def _bounding_box(boxes: Iterable[Box | None]) -> Box | None:
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return tuple(slice(min(b[d].start for b in present), max(b[d].stop for b in present))
                 for d in range(len(present[0])))


def _boxes(array: npt.NDArray[np.uint8], channels: Sequence[int]) -> list[Box | None]:
    found = ndimage.find_objects(array, max_label=max(channels, default=0))
    return [found[c - 1] for c in channels]


def keep_largest_components(array: npt.NDArray[np.uint8], channels: Sequence[int]) -> None:
    """Keep only the largest connected component of each channel; the rest becomes 0."""
    for channel, box in zip(channels, _boxes(array, channels), strict=True):
        if box is None:
            continue
        sub = array[box]
        components, count = ndimage.label(sub == channel)
        if count > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            sub[(components > 0) & (components != int(np.argmax(sizes)))] = 0


def _choose_offset(votes: npt.NDArray[np.int64]) -> int:
    """The offset ``o`` (vertebra ``i`` gets level ``o + i``) with the best agreement.

    ``votes[i, level]`` counts vertebra ``i``'s voxels the network gave ``level``. Agreement sums
    each kept vertebra's share of votes for its new level. Ties go to the offset keeping more
    vertebrae, then to the one closest to the network's own (the median of each vertebra's
    majority level minus its rank), then to the smaller offset.
    """
    count, levels = votes.shape
    shares = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1)
    implied = float(np.median(np.argmax(votes, axis=1) - np.arange(count)))
    best: tuple[float, int, float, int] | None = None
    for offset in range(-(count - 1), levels):
        kept = [i for i in range(count) if 0 <= offset + i < levels]
        agreement = round(float(sum(shares[i, offset + i] for i in kept)), 9)
        key = (agreement, len(kept), -abs(offset - implied), -offset)
        if best is None or key > best:
            best = key
    assert best is not None
    return -best[3]


def _components(sub: npt.NDArray[np.uint8], level_channels: Sequence[int]
                ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Every connected component of every level, numbered from 1, and each one's level index."""
    instances = np.zeros(sub.shape, dtype=np.int32)
    level_of = [-1]
    for level, channel in enumerate(level_channels):
        components, count = ndimage.label(sub == channel)
        inside = components > 0
        instances[inside] = components[inside] + (len(level_of) - 1)
        level_of.extend([level] * count)
    return instances, np.asarray(level_of, dtype=np.int64)


def _touching(instances: npt.NDArray[np.int32], component: int, box: Box
              ) -> npt.NDArray[np.int32]:
    """The components face-adjacent to ``component`` (inside ``box``), once per contact voxel."""
    grown = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
    region = instances[grown]
    shell = ndimage.binary_dilation(region == component) & (region != component)
    found: npt.NDArray[np.int32] = region[shell]
    return found[found > 0]


def _largest_per_level(sizes: npt.NDArray[np.int64], level_of: npt.NDArray[np.int64],
                       levels: int) -> tuple[npt.NDArray[np.int64], float]:
    """Each level's largest component (voxels) and their median over the levels present."""
    largest = np.zeros(levels, dtype=np.int64)
    np.maximum.at(largest, level_of[1:], sizes[1:])
    return largest, float(np.median(largest[largest > 0]))


def _vertebrae(instances: npt.NDArray[np.int32], boxes: Sequence[Box | None],
               sizes: npt.NDArray[np.int64], level_of: npt.NDArray[np.int64],
               largest: npt.NDArray[np.int64], median: float) -> npt.NDArray[np.bool_]:
    """Which components are vertebrae rather than fragments (the module docstring's rule);
    ``boxes``: each component's bounding box, as ``ndimage.find_objects`` gives them;
    ``largest``, ``median``: as :func:`_largest_per_level` gives them."""
    levels = len(largest)
    is_vertebra = sizes >= FRAGMENT_FRACTION * median
    is_vertebra[0] = False
    local = np.full(levels, SMALLEST_LEVEL_SHARE * median)
    for level in range(levels):
        near = largest[max(0, level - 1):level + 2]
        if (near > 0).any():
            local[level] = max(local[level], float(np.median(near[near > 0])))
    candidates = ~is_vertebra & (sizes >= FRAGMENT_FRACTION * local[level_of])
    candidates[0] = False
    large = is_vertebra.copy()
    for component in map(int, np.flatnonzero(candidates)):
        box = boxes[component - 1]
        if box is not None and not large[_touching(instances, component, box)].any():
            is_vertebra[component] = True
    return is_vertebra


def _overlap_in_plane(a: Box, b: Box) -> bool:
    return all(a[d].start < b[d].stop and b[d].start < a[d].stop for d in (1, 2))


def _partial_vertebrae(instances: npt.NDArray[np.int32], boxes: Sequence[Box | None],
                       sizes: npt.NDArray[np.int64], centroid_z: npt.NDArray[np.float64],
                       is_vertebra: npt.NDArray[np.bool_], median: float,
                       cut: dict[int, bool]) -> dict[int, int]:
    """Vertebrae cut by the field of view (the module docstring's rule): component -> +1 at
    the cranial end, -1 at the caudal end. ``cut[side]``: whether ``instances`` reaches that
    face of the volume."""
    vertebrae = np.flatnonzero(is_vertebra)
    candidates = np.flatnonzero(~is_vertebra & (sizes >= PARTIAL_FRACTION * median))
    partial: dict[int, int] = {}
    for side in (1, -1):
        if not cut[side] or not vertebrae.size:
            continue
        end = int(vertebrae[np.argmax(side * centroid_z[vertebrae])])
        end_box = boxes[end - 1]
        if end_box is None:  # never: every component has voxels
            continue
        best: int | None = None
        for component in map(int, candidates[candidates > 0]):
            box = boxes[component - 1]
            if box is None:  # never, as above
                continue
            on_face = box[0].stop == instances.shape[0] if side > 0 else box[0].start == 0
            if (on_face and side * centroid_z[component] > side * centroid_z[end]
                    and _overlap_in_plane(box, end_box)
                    and not is_vertebra[_touching(instances, component, box)].any()
                    and (best is None or sizes[component] > sizes[best])):
                best = component
        if best is not None:
            partial[best] = side
    return partial


def _owners(instances: npt.NDArray[np.int32], boxes: Sequence[Box | None],
            is_vertebra: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Component -> the vertebra it belongs to: itself, the vertebra a fragment touches, or 0."""
    owner = np.where(is_vertebra, np.arange(len(is_vertebra)), 0)
    for fragment, box in enumerate(boxes, start=1):
        if box is None or is_vertebra[fragment]:
            continue
        neighbours = owner[_touching(instances, fragment, box)]
        neighbours = neighbours[neighbours > 0]
        if neighbours.size:
            owner[fragment] = int(np.bincount(neighbours).argmax())
    return owner


def enforce_level_order(array: npt.NDArray[np.uint8], level_channels: Sequence[int]) -> None:
    """Relabel vertebrae so that levels run consecutively from Superior to Inferior.

    ``level_channels`` are the vertebra channels in cranio-caudal order (T1 first). See the
    module docstring for the rule.
    """
    box = _bounding_box(_boxes(array, level_channels))
    if box is None:
        return
    sub = array[box]
    instances, level_of = _components(sub, level_channels)
    n = len(level_of)
    per_slice = np.stack([np.bincount(s.ravel(), minlength=n) for s in instances])
    sizes = per_slice.sum(axis=0)
    centroid_z = (np.arange(sub.shape[0])[:, None] * per_slice).sum(axis=0) / np.maximum(sizes, 1)
    boxes = ndimage.find_objects(instances)
    largest, median = _largest_per_level(sizes, level_of, len(level_channels))
    is_vertebra = _vertebrae(instances, boxes, sizes, level_of, largest, median)
    partial = _partial_vertebrae(instances, boxes, sizes, centroid_z, is_vertebra, median,
                                 {1: box[0].stop == array.shape[0], -1: box[0].start == 0})
    is_vertebra[list(partial)] = True
    owner = _owners(instances, boxes, is_vertebra)
    vertebrae = sorted((v for v in np.flatnonzero(is_vertebra) if int(v) not in partial),
                       key=lambda i: -centroid_z[i])
    rank = {int(v): r for r, v in enumerate(vertebrae)}
    votes = np.zeros((len(vertebrae), len(level_channels)), dtype=np.int64)
    for i in np.flatnonzero(owner):
        if int(owner[i]) in rank:
            votes[rank[int(owner[i])], level_of[i]] += sizes[i]
    new_channel = np.zeros(n, dtype=np.uint8)
    if vertebrae:
        offset = _choose_offset(votes)
        levels = {int(v): offset + r for r, v in enumerate(vertebrae)}
        # a cut vertebra at the cranial end is the level above the top one, and vice versa
        levels.update({v: offset - 1 if side > 0 else offset + len(vertebrae)
                       for v, side in partial.items()})
        for v, level in levels.items():
            if 0 <= level < len(level_channels):
                new_channel[v] = level_channels[level]
    lut = new_channel[owner]
    vertebra_voxels = instances > 0
    sub[vertebra_voxels] = lut[instances[vertebra_voxels]]
