"""PNG figures for the report (matplotlib, Agg backend), returned as bytes so the HTML can inline them.

ECGs are drawn as a clinician reads them: standard paper, 25 mm/s and 10 mm/mV, a 1 mm minor and 5 mm major
grid, the 3 x 4 lead layout with a lead II rhythm strip and a 1 mV calibration pulse per row. The figure's
size follows from that scale (a 10 s strip is 250 mm wide), so shown at `EcgPaper.width_mm` it is real size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..signal.leads import STANDARD_LEADS

MM_PER_S = 25.0  # paper speed
MM_PER_MV = 10.0  # gain
DPI = 150  # ~6 px per mm: every 1 mm grid line stays visible
LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))  # 3 x 4, 2.5 s each
RHYTHM_LEAD = "II"
ROW_MM = 35.0  # 3.5 mV per row: the QRS of most leads fits, taller ones overlap the next row as on paper
CALIBRATION_MM = 10.0  # room left of the tracing for the 1 mV x 200 ms calibration pulse
TITLE_MM = 8.0


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    _plt().close(fig)
    return buffer.getvalue()


@dataclass(frozen=True)
class EcgPaper:
    """Geometry of one ECG sheet in millimetres (data units of the plot are millimetres of paper)."""

    seconds: float

    @property
    def strip_mm(self) -> float:
        return self.seconds * MM_PER_S

    @property
    def width_mm(self) -> float:
        return CALIBRATION_MM + self.strip_mm

    @property
    def grid_height_mm(self) -> float:
        return ROW_MM * (len(LAYOUT) + 1)

    @property
    def height_mm(self) -> float:
        return self.grid_height_mm + TITLE_MM

    def pixels(self, dpi: int = DPI) -> tuple[int, int]:
        return round(self.width_mm / 25.4 * dpi), round(self.height_mm / 25.4 * dpi)


def twelve_lead(mv: np.ndarray, fs: float, title: str) -> tuple[bytes, EcgPaper]:
    """The 12 leads of one record (12, L) in mV on ECG paper, as PNG bytes and the sheet's geometry."""
    plt = _plt()
    paper = EcgPaper(mv.shape[1] / fs)
    fig = plt.figure(figsize=(paper.width_mm / 25.4, paper.height_mm / 25.4))
    ax = fig.add_axes((0.0, 0.0, 1.0, paper.grid_height_mm / paper.height_mm))  # 1 data unit = 1 mm of paper
    ax.set_xlim(0, paper.width_mm)
    ax.set_ylim(0, paper.grid_height_mm)
    ax.set_xticks(np.arange(0, paper.width_mm + 1e-6, 5.0))
    ax.set_xticks(np.arange(0, paper.width_mm + 1e-6, 1.0), minor=True)
    ax.set_yticks(np.arange(0, paper.grid_height_mm + 1e-6, 5.0))
    ax.set_yticks(np.arange(0, paper.grid_height_mm + 1e-6, 1.0), minor=True)
    ax.grid(which="major", color="#e39a9a", lw=0.6)
    ax.grid(which="minor", color="#f7dada", lw=0.3)
    ax.tick_params(which="both", length=0, labelleft=False, labelbottom=False)
    for side in ax.spines.values():
        side.set_visible(False)
    index = {lead: k for k, lead in enumerate(STANDARD_LEADS)}
    samples = mv.shape[1]
    column = samples // len(LAYOUT[0])
    rows = [[(lead, c * column, (c + 1) * column) for c, lead in enumerate(leads)] for leads in LAYOUT]
    rows.append([(RHYTHM_LEAD, 0, samples)])
    for r, row in enumerate(rows):
        baseline = paper.grid_height_mm - (r + 0.5) * ROW_MM
        pulse_x = np.array([1, 3, 3, 8, 8, 10], dtype=float)  # 1 mV high, 200 ms (5 mm) wide
        ax.plot(pulse_x, baseline + np.array([0, 0, 1, 1, 0, 0]) * MM_PER_MV, color="black", lw=0.8)
        for lead, start, stop in row:
            x = CALIBRATION_MM + np.arange(start, stop) / fs * MM_PER_S
            ax.plot(x, baseline + mv[index[lead], start:stop] * MM_PER_MV, color="black", lw=0.6)
            ax.text(CALIBRATION_MM + start / fs * MM_PER_S + 1, baseline + 0.3 * ROW_MM, lead, fontsize=8,
                    weight="bold")
            if start:
                ax.plot([x[0], x[0]], [baseline - 3, baseline + 3], color="black", lw=0.8)  # lead change mark
    room = int(paper.width_mm / 2.0) - 24  # characters of 9 pt text that fit beside the scale note
    title = title if len(title) <= room else title[: max(room - 1, 8)] + "…"
    fig.text(0.005, 1 - 0.5 * TITLE_MM / paper.height_mm, f"{title}   25 mm/s, 10 mm/mV", fontsize=9, va="center",
             parse_math=False)
    return _png(fig, DPI), paper


def histograms(frame, columns: list[str]) -> bytes:
    """One histogram per measurement column (NaNs left out, count shown)."""
    plt = _plt()
    n = len(columns)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, columns):
        values = frame[name].drop_nulls().drop_nans().to_numpy()
        ax.hist(values, bins=40, color="#4472c4")
        ax.set_title(f"{name} (n={values.size})", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)
