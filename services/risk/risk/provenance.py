"""Where a result comes from: source series and model; deterministic UIDs and honest names.

Every UID of a result object is derived from the source series UID and the names and versions
of the models whose results it holds (:func:`spinemets.uids.derived_uid`), so re-running a
series with the same models gives the same UIDs and a repeated C-STORE replaces the object at
the PACS. Results of a demo model say so in every name a viewer shows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from spinemets.labelmaps import LabelMap
from spinemets.uids import derived_uid

#: Appended to algorithm and device names of demo models.
DEMO_DISCLAIMER = "phantom-trained demo model, not for clinical use"

#: Longest Long String (LO) value, PS3.5 6.2.
LO_MAX = 64


@dataclass(frozen=True)
class Provenance:
    """The source series and the model that produced the label map."""

    study_instance_uid: str
    series_instance_uid: str
    model_name: str
    model_version: str
    demo: bool
    #: Further models (name, version) whose results the objects hold (muscles, lesions).
    models: tuple[tuple[str, str], ...] = ()

    def uid(self, *role: str) -> str:
        """UID of a result object (or item) with role ``role``, e.g. ``("seg", "instance")``."""
        further = [part for model in self.models for part in model]
        return derived_uid(self.series_instance_uid, self.model_name, self.model_version,
                           *further, *role)

    def with_maps(self, *maps: LabelMap | None) -> Provenance:
        """This provenance with the models of further label maps in its UIDs (a demo when any
        of them is)."""
        found = [m for m in maps if m is not None]
        return replace(self, models=tuple((m.model_name, m.model_version) for m in found),
                       demo=self.demo or any(m.demo for m in found))

    def of(self, label_map: LabelMap) -> Provenance:
        """The provenance of another model's label map in the same series (its names and
        tracking UIDs)."""
        return Provenance(self.study_instance_uid, self.series_instance_uid,
                          label_map.model_name, label_map.model_version, label_map.demo)

    @property
    def seg_series_uid(self) -> str:
        return self.uid("seg", "series")

    @property
    def seg_instance_uid(self) -> str:
        return self.uid("seg", "instance")

    @property
    def sr_series_uid(self) -> str:
        return self.uid("sr", "series")

    @property
    def sr_instance_uid(self) -> str:
        return self.uid("sr", "instance")

    def tracking_uid(self, label_name: str) -> str:
        """Tracking UID of one structure: the same in the SEG segment and the SR group."""
        return self.uid("tracking", label_name)

    @property
    def device_uid(self) -> str:
        """Device Observer UID of the model (the same for every series it processes)."""
        return derived_uid("device", self.model_name, self.model_version)

    @property
    def algorithm_name(self) -> str:
        """Model name, with the demo disclaimer when it is a demo model; fits a LO value."""
        if not self.demo:
            return self.model_name[:LO_MAX]
        suffix = f" ({DEMO_DISCLAIMER})"
        return self.model_name[:LO_MAX - len(suffix)] + suffix

    def describe(self, what: str) -> str:
        """A Series Description: ``what``, with a demo warning when it is a demo model."""
        text = f"{what}, DEMO model, not for clinical use" if self.demo else what
        if len(text) > LO_MAX:
            raise ValueError(f"series description {text!r} exceeds {LO_MAX} characters")
        return text
