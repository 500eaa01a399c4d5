"""Drawing of the visual report's pages with matplotlib: a vector PDF and RGB rasters.

Pages are A4 landscape. Page 1 (:class:`LevelPage`): the sagittal reformat in a bone window
with each vertebra filled (semi-transparent) and outlined in the colour of its factor of risk,
lesions outlined in their type's catalogue colour, level names and Phi beside the bodies, a
colour bar marking the configured category bounds, and the per-level table. Page 2
(:class:`ChangePage`): the change since the prior study. Rendering is deterministic: the
matplotlib defaults (not a site's matplotlibrc), the bundled DejaVu Sans embedded as TrueType,
and no creation date in the PDF, so identical inputs give identical bytes. Matplotlib's
settings are process-wide, so pages are drawn one report at a time.
"""

from __future__ import annotations

import io
import textwrap
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import matplotlib
import matplotlib.style
import numpy as np
import numpy.typing as npt
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from risk.report_sagittal import Sagittal
from risk.report_table import Table
from spinemets import labels

RGB = tuple[float, float, float]
#: A4 landscape, inches.
PAGE_SIZE = (11.69, 8.27)
#: Opacity of the factor-of-risk fill over the CT.
FILL_ALPHA = 0.45
#: Outline of a vertebra without a factor of risk.
NO_PHI = (0.6, 0.6, 0.6)
DEMO_RED = (0.75, 0.0, 0.0)
_LOCK = threading.Lock()
_OUTLINED = [patheffects.withStroke(linewidth=2.0, foreground="black")]
#: Dark box behind white text over the image (which stays text in the PDF: path effects would
#: turn the letters into paths).
_DARK_BOX: dict[str, Any] = {"boxstyle": "round,pad=0.2", "facecolor": "black", "alpha": 0.6,
                             "edgecolor": "none"}


@dataclass(frozen=True)
class Header:
    """The top of every page: title, information lines, patient line and the demo warning."""

    title: str
    lines: tuple[str, ...]
    patient: str | None
    demo_warning: str | None


@dataclass(frozen=True)
class RiskColours:
    """Colour of a factor of risk: a colour map over a Phi range, and the category bounds."""

    colour_map: str
    phi_range: tuple[float, float]
    #: (name, lowest Phi) of each category, increasing.
    categories: tuple[tuple[str, float], ...]

    def rgb(self, phi: float) -> RGB:
        """The colour of ``phi`` (clipped to the range)."""
        low, high = self.phi_range
        r, g, b, _ = matplotlib.colormaps[self.colour_map](
            float(np.clip((phi - low) / (high - low), 0.0, 1.0)))
        return (float(r), float(g), float(b))


@dataclass(frozen=True)
class LevelMark:
    """A vertebra on the sagittal view: its level, body centroid (patient y and z, mm) and
    factor of risk (None when missing)."""

    level: str
    y_mm: float
    z_mm: float
    phi: float | None


@dataclass(frozen=True)
class LevelPage:
    """Page 1: the sagittal view with its marks, the per-level table and footnotes."""

    header: Header
    sagittal: Sagittal
    marks: tuple[LevelMark, ...]
    table: Table
    #: Title of the table's factor-of-risk column, whose cells take their level's colour.
    phi_column: str
    colours: RiskColours
    #: Bone window: centre and width, HU.
    window_hu: tuple[float, float]
    caption: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ChangePage:
    """Page 2: the change since the prior study."""

    header: Header
    title: str
    table: Table
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Rendered:
    """The report as one PDF and as one RGB image per page (``[row, column, channel]``)."""

    pdf: bytes
    pages: tuple[npt.NDArray[np.uint8], ...]


@contextmanager
def _style() -> Iterator[None]:
    with _LOCK, matplotlib.style.context("default"), matplotlib.rc_context(
            {"font.family": "DejaVu Sans", "font.size": 7.0, "pdf.fonttype": 42,
             "pdf.compression": 6}):
        yield


def _header(fig: Figure, header: Header) -> float:
    """Draw the header; returns the figure height fraction below it."""
    top = 0.985
    if header.demo_warning:
        fig.add_artist(Rectangle((0.0, 0.945), 1.0, 0.055, transform=fig.transFigure,
                                 facecolor=DEMO_RED, edgecolor="none"))
        fig.text(0.5, 0.9725, header.demo_warning, ha="center", va="center", color="white",
                 fontsize=14, fontweight="bold")
        top = 0.93
    fig.text(0.03, top, header.title, ha="left", va="top", fontsize=13, fontweight="bold")
    if header.patient:
        fig.text(0.97, top, header.patient, ha="right", va="top", fontsize=8)
    y = top - 0.035
    for line in header.lines:
        fig.text(0.03, y, line, ha="left", va="top", fontsize=7.5)
        y -= 0.02
    return y - 0.01


def _catalogue_rgb(label: labels.Label) -> RGB:
    r, g, b = label.rgb
    return (r / 255, g / 255, b / 255)


def _luminance(rgb: RGB) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _table(fig: Figure, table: Table, left: float, right: float, top: float,
           fills: Mapping[tuple[int, int], RGB]) -> float:
    """Draw ``table`` between ``left`` and ``right`` from ``top`` (figure fractions), cells
    ``fills[(row, column)]`` filled; returns the fraction below it."""
    head_h, row_h = 0.042, 0.026
    widths = [max(len(line) for text in (title, *(row[c] for row in table.rows))
                  for line in text.split("\n")) + 3
              for c, title in enumerate(table.columns)]
    scale = (right - left) / sum(widths)
    edges = np.concatenate([[left], left + np.cumsum(widths) * scale])
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0), label="table")
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.add_patch(Rectangle((left, top - head_h), right - left, head_h, facecolor="0.85",
                           edgecolor="none"))
    for c, title in enumerate(table.columns):
        ax.text((edges[c] + edges[c + 1]) / 2, top - head_h / 2, title, ha="center",
                va="center", fontsize=7, fontweight="bold", linespacing=1.1)
    for r, row in enumerate(table.rows):
        y = top - head_h - (r + 1) * row_h
        if r % 2:
            ax.add_patch(Rectangle((left, y), right - left, row_h, facecolor="0.95",
                                   edgecolor="none"))
        for c, text in enumerate(row):
            fill = fills.get((r, c))
            if fill is not None:
                ax.add_patch(Rectangle((edges[c], y), edges[c + 1] - edges[c], row_h,
                                       facecolor=fill, edgecolor="none"))
            ax.text((edges[c] + edges[c + 1]) / 2, y + row_h / 2, text, ha="center",
                    va="center", fontsize=7.5, fontweight="bold" if c == 0 else "normal",
                    color="white" if fill is not None and _luminance(fill) < 0.45 else "black")
    bottom = top - head_h - len(table.rows) * row_h
    ax.plot([left, right], [top, top], color="black", linewidth=0.8)
    ax.plot([left, right], [top - head_h, top - head_h], color="black", linewidth=0.5)
    ax.plot([left, right], [bottom, bottom], color="black", linewidth=0.8)
    return bottom


def _notes(fig: Figure, notes: Sequence[str], left: float, top: float, width: int) -> None:
    wrapped = [textwrap.fill(n, width, subsequent_indent="   ") for n in notes]
    fig.text(left, top, "\n".join(wrapped), ha="left", va="top", fontsize=6.5,
             linespacing=1.3)


def _composite(page: LevelPage) -> npt.NDArray[np.float64]:
    """The CT in the bone window, grey, with each level filled in its factor-of-risk colour."""
    s = page.sagittal
    centre, width = page.window_hu
    grey = np.clip((s.hu.astype(np.float64) - (centre - width / 2)) / width, 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for mark in page.marks:
        if mark.phi is None:
            continue
        inside = s.vertebrae == labels.vertebra(mark.level).value
        colour = np.asarray(page.colours.rgb(mark.phi))
        rgb[inside] = (1 - FILL_ALPHA) * rgb[inside] + FILL_ALPHA * colour
    return rgb


def _fit(extent: tuple[float, float, float, float], left: float, top: float, width: float,
         height: float) -> tuple[float, float, float, float]:
    """The largest rectangle (figure fractions) of the image's proportions within the box
    ``width`` x ``height`` hanging from (``left``, ``top``), centred left to right."""
    page_w, page_h = PAGE_SIZE
    aspect = (extent[3] - extent[2]) / (extent[1] - extent[0])
    w_in = min(width * page_w, height * page_h / aspect)
    h_in = w_in * aspect
    return (left + (width * page_w - w_in) / 2 / page_w, top - h_in / page_h, w_in / page_w,
            h_in / page_h)


def _front(s: Sagittal, inside: npt.NDArray[np.bool_], mark: LevelMark) -> float:
    """Patient y of the vertebra's front at the height of its body centroid (within 5 mm),
    or of the centroid when the plane misses it there."""
    row = round((s.top_mm - mark.z_mm) / s.pixel_mm)
    reach = max(1, int(5.0 / s.pixel_mm))
    columns = np.flatnonzero(inside[max(0, row - reach):row + reach + 1].any(axis=0))
    return s.anterior_mm + columns[0] * s.pixel_mm if columns.size else mark.y_mm


def _mark_text(mark: LevelMark) -> str:
    """The level and its factor of risk, as written beside the vertebra."""
    return mark.level if mark.phi is None else f"{mark.level}  {mark.phi:.2f}"


def _sagittal(fig: Figure, page: LevelPage, rect: tuple[float, float, float, float]) -> None:
    s = page.sagittal
    extent = s.extent
    ax = fig.add_axes(rect, label="sagittal")
    ax.imshow(_composite(page), extent=extent, origin="upper", interpolation="none")
    ax.set_axis_off()
    for mark in page.marks:
        value = labels.vertebra(mark.level).value
        inside = s.vertebrae == value
        colour = NO_PHI if mark.phi is None else page.colours.rgb(mark.phi)
        if inside.any():
            ax.contour(inside.astype(np.uint8), levels=[0.5], colors=[colour],
                       linewidths=1.3, extent=extent, origin="upper")
        ax.text(_front(s, inside, mark) - 3.0, mark.z_mm, _mark_text(mark), ha="right",
                va="center", fontsize=7.5, clip_on=False, color="white", fontweight="bold",
                bbox=_DARK_BOX)
    for value, projected in s.lesions.items():
        ax.contour(projected.astype(np.uint8), levels=[0.5], linewidths=0.9,
                   colors=[_catalogue_rgb(labels.by_value(value))], extent=extent,
                   origin="upper")
    left, right, bottom, top = extent
    for text, x, y, ha, va in (("A", left + 2, (bottom + top) / 2, "left", "center"),
                               ("P", right - 2, (bottom + top) / 2, "right", "center"),
                               ("H", (left + right) / 2, top - 2, "center", "top"),
                               ("F", (left + right) / 2, bottom + 2, "center", "bottom")):
        ax.text(x, y, text, ha=ha, va=va, fontsize=9, color="white", fontweight="bold",
                bbox=_DARK_BOX)
    ax.plot([right - 55, right - 5], [bottom + 6, bottom + 6], color="white", linewidth=2,
            path_effects=_OUTLINED)
    ax.text(right - 30, bottom + 9, "5 cm", ha="center", va="bottom", fontsize=6.5,
            color="white", fontweight="bold", bbox=_DARK_BOX)


def _colour_bar(fig: Figure, colours: RiskColours, rect: tuple[float, float, float, float]
                ) -> None:
    low, high = colours.phi_range
    cax = fig.add_axes(rect, label="colour bar")
    mappable = ScalarMappable(norm=Normalize(low, high), cmap=colours.colour_map)
    bar = fig.colorbar(mappable, cax=cax, orientation="horizontal", extend="max")
    bounds = [b for _, b in colours.categories if low < b < high]
    bar.set_ticks([low, *bounds, high])
    bar.ax.xaxis.set_ticks_position("top")
    bar.ax.tick_params(labelsize=6.5)
    bar.set_label("Factor of risk Φ (load / strength)", fontsize=7, labelpad=3)
    bar.ax.xaxis.set_label_position("top")
    for b in bounds:
        cax.axvline(b, color="black", linewidth=1.2)
    edges = [max(low, b) for _, b in colours.categories] + [high]
    for (name, _), start, end in zip(colours.categories, edges, edges[1:], strict=False):
        if end > start:
            cax.text((start + end) / 2, -0.5, textwrap.fill(name, 22), ha="center",
                     va="top", fontsize=6.5, transform=cax.get_xaxis_transform())


def _lesion_legend(fig: Figure, at: tuple[float, float]) -> None:
    handles = [Line2D([], [], color=_catalogue_rgb(label), linewidth=1.2,
                      label=label.display)
               for label in labels.CATALOGUE if label.group is labels.Group.LESION]
    handles.append(Line2D([], [], color=NO_PHI, linewidth=1.3, label="Φ not available"))
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=at, ncol=2, fontsize=6.5,
               frameon=False, handlelength=1.5, columnspacing=1.0)


def _level_page(page: LevelPage) -> Figure:
    fig = Figure(figsize=PAGE_SIZE)
    top = _header(fig, page.header)
    rect = _fit(page.sagittal.extent, 0.02, top, 0.31, top - 0.20)
    _sagittal(fig, page, rect)
    y = rect[1] - 0.01
    fig.text(0.175, y, textwrap.fill(page.caption, 75), ha="center", va="top", fontsize=6.5)
    _colour_bar(fig, page.colours, (0.05, y - 0.095, 0.25, 0.018))
    _lesion_legend(fig, (0.02, y - 0.19))
    phi_col = page.table.columns.index(page.phi_column)
    phis = {m.level: m.phi for m in page.marks}
    fills = {(r, phi_col): page.colours.rgb(phi)
             for r, row in enumerate(page.table.rows)
             if (phi := phis.get(row[0])) is not None}
    bottom = _table(fig, page.table, 0.37, 0.97, top, fills)
    _notes(fig, page.notes, 0.37, bottom - 0.015, 150)
    return fig


def _change_page(page: ChangePage) -> Figure:
    fig = Figure(figsize=PAGE_SIZE)
    top = _header(fig, page.header)
    fig.text(0.03, top, page.title, ha="left", va="top", fontsize=11, fontweight="bold")
    bottom = _table(fig, page.table, 0.03, 0.97, top - 0.04, {})
    _notes(fig, page.notes, 0.03, bottom - 0.015, 230)
    return fig


def _raster(fig: Figure, dpi: int) -> npt.NDArray[np.uint8]:
    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()  # type: ignore[no-untyped-call]
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]
    return np.ascontiguousarray(rgba[..., :3])


def render(pages: Sequence[LevelPage | ChangePage], dpi: int,
           metadata: Mapping[str, str]) -> Rendered:
    """Draw ``pages`` into one PDF (document ``metadata``: Title, Author, Subject...) and
    into one RGB image per page at ``dpi``."""
    with _style():
        figures = [_level_page(p) if isinstance(p, LevelPage) else _change_page(p)
                   for p in pages]
        buffer = io.BytesIO()
        with PdfPages(buffer, metadata={**metadata, "CreationDate": None}) as pdf:
            for fig in figures:
                pdf.savefig(fig)
        images = tuple(_raster(fig, dpi) for fig in figures)
    return Rendered(buffer.getvalue(), images)
