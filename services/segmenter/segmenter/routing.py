"""Several roles on one volume: the order they run in, and the boxes of cropped roles.

A role with a crop rule (:class:`~segmenter.crop.CropRule`, ``segmenter.crops``) runs after its
reference role when the request names both, on the box around the reference map's labels; when
the request does not name the reference role, it runs on the whole volume. A box with none of
the labels (no vertebra found) gives the role an empty map: nothing is run. A rule with
``extend_reference`` then adds the role's voxels that touch the reference labels to the
reference map (:func:`segmenter.crop.extend`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from segmenter.crop import (
    CropRule,
    crop_volume,
    empty,
    extend,
    group_box,
    paste,
    patch_extent,
)
from segmenter.spec import ModelSpec
from spinemets import logs
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap

log = logging.getLogger(__name__)

#: ``run(role, volume)``: the label map of one role's model on a volume.
RunRole = Callable[[str, Volume], LabelMap]


def run_order(roles: Sequence[str], crops: Mapping[str, CropRule]) -> list[str]:
    """``roles`` with every cropped role whose reference is requested moved after the others."""
    later = [r for r in roles if r in crops and crops[r].around in roles]
    return [r for r in roles if r not in later] + later


def segment_roles(volume: Volume, roles: Sequence[str], specs: Mapping[str, ModelSpec],
                  crops: Mapping[str, CropRule], run: RunRole) -> list[LabelMap]:
    """The label map of each role of ``roles`` (in that order), all on the volume's grid."""
    maps: dict[str, LabelMap] = {}
    for role in run_order(roles, crops):
        rule = crops.get(role)
        if rule is None or rule.around not in maps:
            maps[role] = run(role, volume)
            continue
        box = group_box(maps[rule.around], rule.group, rule.margin_mm,
                        patch_extent(volume.geometry, specs[role]))
        if box is None:
            log.warning("no %s labels in the %s map: %s not run", rule.group, rule.around, role,
                        extra=logs.fields(role=role, reason="empty-crop"))
            maps[role] = empty(volume.geometry, specs[role])
            continue
        shape = [s.stop - s.start for s in box]
        log.info("%s cropped to %s of %s voxels", role, shape, list(volume.array.shape),
                 extra=logs.fields(role=role, box=[[s.start, s.stop] for s in box]))
        maps[role] = paste(run(role, crop_volume(volume, box)), box, volume.geometry)
        if rule.extend_reference:
            maps[rule.around] = extend(maps[rule.around], maps[role], box, rule.group)
    return [maps[role] for role in roles]
