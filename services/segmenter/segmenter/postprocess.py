"""Post-processing of a label map of output channels: connected components and vertebra levels.

Both work on canonical ``(z, y, x)`` arrays (slice index increasing towards Superior) holding
network channel indices, in place, inside the bounding box of the structures concerned.
Connectivity is face adjacency (``scipy.ndimage.label``'s default).

Level consistency rule
    Every connected component of a vertebra channel is a candidate. A component of at least
    ``FRAGMENT_FRACTION`` of the median vertebra (over levels, each level's largest component) is a
    vertebra. A smaller one is a vertebra too when it touches none of those and reaches
    ``FRAGMENT_FRACTION`` of its level's reference size: the median of the largest components of
    that level and the levels next to it, at least ``SMALLEST_LEVEL_SHARE`` of the median vertebra.
    Vertebral size grows about fivefold from T1 to L5, so against the median alone a partly labelled
    T1 was a fragment and a C7 labelled T1 took its place; a piece of a vertebra that the network
    gave the next level's label touches the rest of it, and stays a fragment. A larger piece (a
    spinous process labelled as the vertebra below) passes the size test against the median, which
    the lumbar levels raise, and would push every level on one side of it by one. So each vertebra
    that touches another and is neither the first nor the last is tested as a piece of a neighbour:
    it becomes a fragment if that raises the agreement defined below; the one that raises it most
    goes first, then the test runs again. A real vertebra, however compressed, stays one: without it
    its level is empty, and the levels on one side move by one, which lowers the agreement. A
    fragment joins the vertebra it touches, directly or through other fragments (the nearest; among
    several, the one it shares most voxel faces with); any other becomes background. The vertebrae
    left are ordered cranio-caudally by centroid and given consecutive levels ``o, o+1, ...``; ``o``
    is the offset with the best agreement: the sum over vertebrae of the share of each vertebra's
    voxels whose network label equals its new level (so every vertebra weighs the same, whatever its
    size or how much of it is in view). Ties go to the offset keeping more vertebrae, then to the
    one nearest the network's own. Vertebrae the chosen offset puts outside the model's levels are
    dropped: a C7 or S1 labelled like its neighbour, next to the levels the network identified. A
    correct map is unchanged but for stray islands; a duplicated, skipped or swapped level is fixed.

Vertebrae cut by the field of view
    A vertebra that the first or last slice cuts may show only a sliver: a piece of its body or
    of its processes far below any size rule. A component that is neither a vertebra by the
    rule above nor a fragment of one (connected to none), touches the cranial (caudal) face of
    the volume, lies beyond every vertebra in that direction, overlaps the end vertebra with
    its fragments in the axial plane (it continues the spine) and reaches ``PARTIAL_FRACTION``
    of the median vertebra is the next vertebra, partly in view: the largest such component at
    each end takes the level above (below) the end vertebra's, when the model has one, and does
    not vote on the offset. Its fragments join it as a vertebra's do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage, sparse

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


def _best_offset(votes: npt.NDArray[np.int64]) -> tuple[float, int]:
    """The agreement of the best offset ``o`` (vertebra ``i`` gets level ``o + i``), and ``o``.

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
    return best[0], -best[3]


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


class Contacts:
    """Face contacts between the components of an instance map: for each component, the
    components it touches and the number of voxel faces it shares with each."""

    def __init__(self, instances: npt.NDArray[np.int32], count: int) -> None:
        rows, cols = [], []
        for axis in range(instances.ndim):
            lower = instances[(slice(None),) * axis + (slice(None, -1),)]
            upper = instances[(slice(None),) * axis + (slice(1, None),)]
            touching = (lower != upper) & (lower > 0) & (upper > 0)
            first, second = lower[touching], upper[touching]
            rows += [first, second]
            cols += [second, first]
        pairs = (np.concatenate(rows), np.concatenate(cols))
        matrix = sparse.csr_array((np.ones(pairs[0].size, np.int64), pairs), shape=(count, count))
        matrix.sum_duplicates()
        self._matrix = matrix

    def of(self, component: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """The components ``component`` touches, and the faces it shares with each."""
        row = slice(self._matrix.indptr[component], self._matrix.indptr[component + 1])
        return self._matrix.indices[row], self._matrix.data[row]

    def touches(self, component: int, among: npt.NDArray[np.bool_]) -> bool:
        """Whether ``component`` touches a component for which ``among`` is true."""
        return bool(among[self.of(component)[0]].any())


def _largest_per_level(sizes: npt.NDArray[np.int64], level_of: npt.NDArray[np.int64],
                       levels: int) -> tuple[npt.NDArray[np.int64], float]:
    """Each level's largest component (voxels) and their median over the levels present."""
    largest = np.zeros(levels, dtype=np.int64)
    np.maximum.at(largest, level_of[1:], sizes[1:])
    return largest, float(np.median(largest[largest > 0]))


def _reference_sizes(largest: npt.NDArray[np.int64], median: float) -> npt.NDArray[np.float64]:
    """Each level's reference size: the median of the largest components of that level and
    the levels next to it, at least ``SMALLEST_LEVEL_SHARE`` of the median vertebra."""
    reference = np.full(len(largest), SMALLEST_LEVEL_SHARE * median)
    for level in range(len(largest)):
        near = largest[max(0, level - 1):level + 2]
        if (near > 0).any():
            reference[level] = max(reference[level], float(np.median(near[near > 0])))
    return reference


def _vertebrae(contacts: Contacts, sizes: npt.NDArray[np.int64],
               level_of: npt.NDArray[np.int64], reference: npt.NDArray[np.float64],
               median: float) -> npt.NDArray[np.bool_]:
    """Which components are vertebrae rather than fragments by size (the module docstring's
    rule); ``reference``: each level's reference size, from :func:`_reference_sizes`."""
    is_vertebra = sizes >= FRAGMENT_FRACTION * median
    is_vertebra[0] = False
    candidates = ~is_vertebra & (sizes >= FRAGMENT_FRACTION * reference[level_of])
    candidates[0] = False
    large = is_vertebra.copy()
    for component in map(int, np.flatnonzero(candidates)):
        if not contacts.touches(component, large):
            is_vertebra[component] = True
    return is_vertebra


def _owners(contacts: Contacts, is_vertebra: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Component -> the vertebra it belongs to: itself, the one a fragment is connected to, or 0.

    Fragments join in rounds, those touching a vertebra first, then those touching a fragment
    that joined; each joins the owner it shares most voxel faces with.
    """
    owner = np.where(is_vertebra, np.arange(len(is_vertebra)), 0)
    pending = [int(f) for f in np.flatnonzero(~is_vertebra[1:]) + 1]
    while pending:
        joined: dict[int, int] = {}
        for fragment in pending:
            neighbours, faces = contacts.of(fragment)
            owners = owner[neighbours]
            if (owners > 0).any():
                joined[fragment] = int(np.bincount(owners, weights=faces * (owners > 0)).argmax())
        if not joined:
            break
        owner[list(joined)] = list(joined.values())
        pending = [f for f in pending if f not in joined]
    return owner


class Ordering:
    """Vertebrae in cranio-caudal order and the votes of the voxels each one owns."""

    def __init__(self, contacts: Contacts, sizes: npt.NDArray[np.int64],
                 level_of: npt.NDArray[np.int64], centroid_z: npt.NDArray[np.float64],
                 levels: int) -> None:
        self.contacts, self.sizes, self.level_of = contacts, sizes, level_of
        self.centroid_z, self.levels = centroid_z, levels

    def vertebrae(self, is_vertebra: npt.NDArray[np.bool_], partial: Iterable[int] = ()
                  ) -> list[int]:
        """The vertebrae but ``partial`` ones, cranial first."""
        excluded = set(partial)
        return sorted((int(v) for v in np.flatnonzero(is_vertebra) if int(v) not in excluded),
                      key=lambda v: -self.centroid_z[v])

    def votes(self, owner: npt.NDArray[np.int64], vertebrae: Sequence[int]
              ) -> npt.NDArray[np.int64]:
        """``votes[i, level]``: voxels owned by ``vertebrae[i]`` that the network gave ``level``."""
        rank = np.full(len(owner), -1)
        rank[list(vertebrae)] = np.arange(len(vertebrae))
        owned = np.flatnonzero(rank[owner] >= 0)
        votes = np.zeros((len(vertebrae), self.levels), dtype=np.int64)
        np.add.at(votes, (rank[owner[owned]], self.level_of[owned]), self.sizes[owned])
        return votes

    def agreement(self, is_vertebra: npt.NDArray[np.bool_]) -> float:
        """The best offset's agreement when exactly the ``is_vertebra`` components are."""
        vertebrae = self.vertebrae(is_vertebra)
        return _best_offset(self.votes(_owners(self.contacts, is_vertebra), vertebrae))[0]


def _merge_pieces(ordering: Ordering, is_vertebra: npt.NDArray[np.bool_]) -> None:
    """Make fragments of the vertebrae that are pieces of a neighbour (the module docstring's
    rule), in place."""
    agreement = ordering.agreement(is_vertebra)
    while True:
        inner = ordering.vertebrae(is_vertebra)[1:-1]
        pieces = [v for v in inner if ordering.contacts.touches(v, is_vertebra)]
        best: tuple[float, int] | None = None
        for piece in pieces:
            is_vertebra[piece] = False
            trial = ordering.agreement(is_vertebra)
            is_vertebra[piece] = True
            if trial > agreement + 1e-9 and (best is None or trial > best[0]):
                best = (trial, piece)
        if best is None:
            return
        agreement, piece = best
        is_vertebra[piece] = False


def _overlap_in_plane(a: Box, b: Box) -> bool:
    return all(a[d].start < b[d].stop and b[d].start < a[d].stop for d in (1, 2))


def _partial_vertebrae(boxes: Sequence[Box | None], shape: tuple[int, ...],
                       sizes: npt.NDArray[np.int64], centroid_z: npt.NDArray[np.float64],
                       owner: npt.NDArray[np.int64], median: float,
                       cut: dict[int, bool]) -> dict[int, int]:
    """Vertebrae cut by the field of view (the module docstring's rule): component -> +1 at
    the cranial end, -1 at the caudal end. ``owner``: as :func:`_owners` gives it for the
    vertebrae in full view; ``cut[side]``: whether the instance map, of ``shape``, reaches that
    face of the volume."""
    attached = owner > 0
    vertebrae = np.flatnonzero(attached & (owner == np.arange(len(owner))))
    candidates = np.flatnonzero(~attached & (sizes >= PARTIAL_FRACTION * median))
    partial: dict[int, int] = {}
    for side in (1, -1):
        if not cut[side] or not vertebrae.size:
            continue
        end = int(vertebrae[np.argmax(side * centroid_z[vertebrae])])
        end_box = _bounding_box(boxes[int(c) - 1] for c in np.flatnonzero(owner == end))
        if end_box is None:  # never: every component has voxels
            continue
        best: int | None = None
        for component in map(int, candidates[candidates > 0]):
            box = boxes[component - 1]
            if box is None:  # never, as above
                continue
            on_face = box[0].stop == shape[0] if side > 0 else box[0].start == 0
            if (on_face and side * centroid_z[component] > side * centroid_z[end]
                    and _overlap_in_plane(box, end_box)
                    and (best is None or sizes[component] > sizes[best])):
                best = component
        if best is not None:
            partial[best] = side
    return partial


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
    contacts = Contacts(instances, n)
    largest, median = _largest_per_level(sizes, level_of, len(level_channels))
    reference = _reference_sizes(largest, median)
    is_vertebra = _vertebrae(contacts, sizes, level_of, reference, median)
    ordering = Ordering(contacts, sizes, level_of, centroid_z, len(level_channels))
    _merge_pieces(ordering, is_vertebra)
    partial = _partial_vertebrae(ndimage.find_objects(instances), sub.shape, sizes, centroid_z,
                                 _owners(contacts, is_vertebra), median,
                                 {1: box[0].stop == array.shape[0], -1: box[0].start == 0})
    is_vertebra[list(partial)] = True
    owner = _owners(contacts, is_vertebra)
    vertebrae = ordering.vertebrae(is_vertebra, partial)
    new_channel = np.zeros(n, dtype=np.uint8)
    if vertebrae:
        offset = _best_offset(ordering.votes(owner, vertebrae))[1]
        levels = {v: offset + r for r, v in enumerate(vertebrae)}
        # a cut vertebra at the cranial end is the level above the top one, and vice versa
        levels.update({v: offset - 1 if side > 0 else offset + len(vertebrae)
                       for v, side in partial.items()})
        for v, level in levels.items():
            if 0 <= level < len(level_channels):
                new_channel[v] = level_channels[level]
    lut = new_channel[owner]
    vertebra_voxels = instances > 0
    sub[vertebra_voxels] = lut[instances[vertebra_voxels]]
