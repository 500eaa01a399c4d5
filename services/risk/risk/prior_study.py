"""The assessment of a follow-up's prior study, for the change since it
(:mod:`risk.change_over_time`).

The prior is assessed again from what the listener's data service holds of it (label maps, CT
volume, instance headers): a prior retrieved from the PACS was segmented but never assessed,
and either way its numbers must come from the same methods and settings as the current study's.
The last few assessments are kept in memory, keyed by the prior series and a digest of its label
maps, so that a retried Assess, or the next follow-up of the same baseline, does not repeat the
work; new label maps (the prior segmented again) make a new key.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

from risk.assess import spine_of
from risk.data import DataClient
from risk.settings import Settings
from risk.spine import SpineAssessment
from spinemets import labels
from spinemets.errors import InputError
from spinemets.labelmaps import LabelMap, of_group
from spinemets.v1 import volume_pb2

#: Prior assessments kept in memory.
CAPACITY = 4


def digest(maps: Sequence[LabelMap]) -> str:
    """A digest of label maps: their voxels, geometry, labels and models."""
    h = hashlib.blake2b(digest_size=16)
    for m in maps:
        h.update(repr((m.array.dtype.str, m.array.shape, m.geometry, sorted(m.labels.items()),
                       m.model_name, m.model_version)).encode())
        h.update(m.array.tobytes())
    return h.hexdigest()


class PriorAssessments:
    """Assessments of prior studies with the service's settings, the last :data:`CAPACITY`
    cached; safe for concurrent use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cache: OrderedDict[tuple[str, str], SpineAssessment] = OrderedDict()
        self._lock = threading.Lock()

    def assessment(self, data: DataClient, prior: volume_pb2.SeriesRef) -> SpineAssessment:
        """The prior series' assessment; :class:`InputError` if it has no vertebra map."""
        maps = data.label_maps(prior)
        key = (prior.series_instance_uid, digest(maps))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        vertebrae = of_group(maps, labels.Group.VERTEBRA)
        if vertebrae is None:
            raise InputError("the prior study has no vertebra label map",
                             reason="no-vertebra-map")
        spine = spine_of(data.volume(prior), vertebrae, maps, data.headers(prior),
                         self.settings)
        with self._lock:
            self._cache[key] = spine
            while len(self._cache) > CAPACITY:
                self._cache.popitem(last=False)
        return spine
