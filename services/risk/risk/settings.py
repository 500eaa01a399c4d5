"""Settings of the risk service (section ``risk`` of config/spinemets.yaml), checked at start."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from pydantic import Field, field_validator, model_validator

from risk.lesion_type import LesionTypeSettings
from risk.method_settings import MethodSettings
from spinemets import __version__
from spinemets.config import AETitle, Port, Section


class Destination(Section):
    """A DICOM node that receives the result objects by C-STORE."""

    ae_title: AETitle
    host: str = Field(min_length=1)
    port: Port = Field(gt=0)

    @property
    def key(self) -> str:
        """How the destination is named in delivery records and responses."""
        return f"{self.ae_title}@{self.host}:{self.port}"


class Equipment(Section):
    """General Equipment of the result objects (PS3.3 C.7.5.1)."""

    manufacturer: str = Field(default="SpineMets project", max_length=64)
    model_name: str = Field(default="spinemets-risk", max_length=64)
    software_version: str = Field(default=__version__, max_length=64)
    device_serial_number: str = Field(default="1", min_length=1, max_length=64)


class ReportSettings(Section):
    """The visual report (:mod:`risk.report`): an Encapsulated PDF and its pages as Secondary
    Capture images, each in its own series."""

    enabled: bool = True
    pdf_series_number: int = Field(default=9703, ge=1)
    sc_series_number: int = Field(default=9704, ge=1)
    #: Activity whose loads and factors of risk the report shows (one of ``methods.loads``);
    #: None: the activity with the highest load in the series.
    activity: str | None = None
    #: Matplotlib colour map of the factor of risk and the Phi range it spans (values above the
    #: top take the top colour); the category bounds of ``methods.factor_of_risk`` are marked.
    colour_map: str = "YlOrRd"
    phi_range: tuple[float, float] = (0.0, 1.5)
    #: Window of the sagittal reformat: centre and width, HU (bone).
    window_hu: tuple[float, float] = (400.0, 1800.0)
    #: Resolution of the Secondary Capture pages (A4 landscape), dots per inch.
    sc_dpi: int = Field(default=150, ge=72, le=300)
    #: Patient name, ID, birth date and sex in the page header, as on a clinical report.
    show_patient: bool = True

    @field_validator("colour_map")
    @classmethod
    def _known_colour_map(cls, name: str) -> str:
        if name not in matplotlib.colormaps:
            raise ValueError(f"unknown matplotlib colour map {name!r}")
        return name

    @model_validator(mode="after")
    def _ranges(self) -> ReportSettings:
        if not 0 <= self.phi_range[0] < self.phi_range[1]:
            raise ValueError("phi_range must be increasing and non-negative")
        if self.window_hu[1] <= 0:
            raise ValueError("window_hu: the width must be positive")
        return self


class Settings(Section):
    """The risk service's settings; see config/spinemets.yaml for documented defaults."""

    grpc_host: str = "0.0.0.0"
    grpc_port: Port = 50054
    #: Port of the Prometheus endpoint (``GET /metrics`` on ``grpc_host``); 0 disables it.
    metrics_port: Port = 9104
    #: Result objects waiting for (or done with) delivery; default ``<common.data_dir>/risk``.
    outbox_dir: Path | None = None
    destinations: tuple[Destination, ...] = Field(
        default=(Destination(ae_title="PACS", host="127.0.0.1", port=11113),), min_length=1)
    #: Our calling AE title for C-STORE.
    ae_title: AETitle = "SPINEMETS_RISK"
    #: C-STORE attempts per destination within one Deliver call; the listener retries the call.
    delivery_attempts: int = Field(default=3, ge=1, le=10)
    #: Wait before the second attempt, doubled before each further one, seconds.
    delivery_backoff_s: float = Field(default=2.0, ge=0, le=60)
    #: Association, DIMSE and network timeout of a C-STORE, seconds.
    dicom_timeout_s: float = Field(default=30.0, gt=0)
    #: Deadline of the calls to the listener's data service, seconds.
    data_timeout_s: float = Field(default=300.0, gt=0)
    seg_series_number: int = Field(default=9701, ge=1)
    sr_series_number: int = Field(default=9702, ge=1)
    equipment: Equipment = Equipment()
    #: On SIGTERM, how long running calls may take to finish, seconds.
    drain_s: float = Field(default=30.0, ge=0)
    #: Calibration, measurement, strength, load, risk and SINS methods (docs/risk-methods.md).
    methods: MethodSettings = MethodSettings()
    #: The per-vertebra lesion type rule (SEG lesion segments, SR; docs/risk-methods.md).
    lesion_types: LesionTypeSettings = LesionTypeSettings()
    #: The visual report (PDF and Secondary Capture series).
    report: ReportSettings = ReportSettings()

    @model_validator(mode="after")
    def _report_activity(self) -> Settings:
        names = [a.name for a in self.methods.loads.activities]
        if self.report.activity is not None and self.report.activity not in names:
            raise ValueError(f"report.activity {self.report.activity!r} is not one of "
                             f"methods.loads.activities ({', '.join(names)})")
        return self

    def outbox_path(self, data_dir: Path) -> Path:
        return self.outbox_dir if self.outbox_dir is not None else data_dir / "risk" / "outbox"
