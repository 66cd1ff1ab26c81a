"""One figure style for the book, log axes that show 0 and inf, and the recurring figures.

The palette is Okabe and Ito's eight colour-blind-safe colours. Figures have an opaque white
background so that they stay readable on the book's dark theme. :func:`log_line` draws a
series on a logarithmic axis and, instead of silently dropping them, marks the points that a
log scale cannot show: exact zeros (underflow) as downward triangles on the bottom edge, and
``inf``/``nan`` (overflow) as upward triangles on the top edge, with a note in the legend.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import _validate

__all__ = ["PALETTE", "KIND_COLORS", "use_style", "color", "log_line", "layer_norm_figure", "figure_png", "decades"]

#: Okabe & Ito's colour-blind-safe palette, black first.
PALETTE = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
}
_CYCLE = [PALETTE[k] for k in ("blue", "orange", "green", "vermillion", "sky", "purple", "black", "yellow")]
#: Colours of the two families compared throughout the book.
KIND_COLORS = {"plain": PALETTE["vermillion"], "residual": PALETTE["blue"]}


def use_style() -> None:
    """Apply the book's matplotlib style (called by :func:`reslab.repro.setup`)."""
    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 90,
            "savefig.dpi": 90,
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
            "axes.facecolor": "white",
            "axes.prop_cycle": matplotlib.cycler(color=_CYCLE),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 8,
            "legend.framealpha": 0.9,
            "font.size": 10,
            "figure.constrained_layout.use": True,
            "svg.hashsalt": "reslab",
        }
    )


def color(index_or_name: int | str) -> str:
    """A palette colour by name (see :data:`PALETTE`) or by position in the cycle."""
    if isinstance(index_or_name, str):
        if index_or_name not in PALETTE:
            raise ValueError(f"index_or_name must be an int or one of {tuple(PALETTE)}, got {index_or_name!r}")
        return PALETTE[index_or_name]
    if isinstance(index_or_name, bool) or not isinstance(index_or_name, int):
        raise TypeError(f"index_or_name must be an int or a colour name, got {type(index_or_name).__name__}")
    return _CYCLE[index_or_name % len(_CYCLE)]


def log_line(ax: Axes, x: Sequence[float], y: Sequence[float], *, label: str | None = None, **kw) -> dict[str, int]:
    """Plot ``y`` against ``x`` on a log y-axis, marking the values a log axis cannot show.

    Positive finite values are drawn as a line. Zeros (and negatives) are drawn as ``v``
    markers on the bottom edge of the axes, ``+inf`` and ``nan`` as ``^`` markers on the top
    edge, in the line's colour, and counted in the legend label. Returns the counts
    ``{"shown": ..., "zero": ..., "nonfinite": ...}``.
    """
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    xs = _validate.float_array("x", x)
    ys = _validate.float_array("y", y)
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a str or None, got {type(label).__name__} {label!r}")
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be 1-D and of equal length, got shapes {xs.shape} and {ys.shape}")
    ax.set_yscale("log")
    ok = np.isfinite(ys) & (ys > 0)
    zero = np.isfinite(ys) & (ys <= 0)
    bad = ~np.isfinite(ys)
    notes = []
    if zero.any():
        notes.append(f"{int(zero.sum())} exactly 0")
    if bad.any():
        notes.append(f"{int(bad.sum())} inf/nan")
    full_label = label if not notes or label is None else f"{label} ({', '.join(notes)})"
    (line,) = ax.plot(xs[ok], ys[ok], label=full_label, **kw)
    c = line.get_color()
    trans = ax.get_xaxis_transform()  # x in data units, y in axes units
    if zero.any():
        ax.plot(xs[zero], np.full(zero.sum(), 0.0), "v", color=c, transform=trans, clip_on=False, markersize=6)
    if bad.any():
        ax.plot(xs[bad], np.full(bad.sum(), 1.0), "^", color=c, transform=trans, clip_on=False, markersize=6)
    return {"shown": int(ok.sum()), "zero": int(zero.sum()), "nonfinite": int(bad.sum())}


def layer_norm_figure(
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    ylabel: str = r"gradient norm $\|\delta_l\|$",
    ax: Axes | None = None,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Per-layer norms of several stacks on one log axis: the book's recurring figure.

    ``series`` maps a legend label to the values at layers ``l = 0..L``. Labels that start
    with ``plain`` or ``residual`` get the book's colours for those families.
    """
    if not isinstance(series, Mapping):
        raise TypeError(f"series must be a mapping of label -> per-layer values, got {type(series).__name__}")
    if not series:
        raise ValueError("series must be a non-empty mapping of label -> per-layer values, got an empty mapping")
    for label, values in series.items():
        if not isinstance(label, str):
            raise TypeError(f"series keys must be str labels, got {type(label).__name__} {label!r}")
        _validate.float_array(f"series[{label!r}]", values)
    for name, text in (("title", title), ("ylabel", ylabel)):
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str, got {type(text).__name__} {text!r}")
    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    if ylim is not None:
        ylim = _validate.float_pair("ylim", ylim, positive=True, increasing=True)
    if ax is None:
        fig, ax = plt.subplots()
    else:
        fig = ax.figure
    for i, (label, values) in enumerate(series.items()):
        words = label.split()
        family = words[0].split("-")[0] if words else ""
        kw = {"color": KIND_COLORS[family]} if family in KIND_COLORS and len(series) <= 2 else {"color": color(i)}
        log_line(ax, range(len(values)), values, label=label, marker=".", markersize=3, **kw)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("layer $l$ (0 = input)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best")
    return fig


#: One Agg canvas on which :func:`figure_png` renders every frame. Its renderer, and with it
#: matplotlib's cache of typeset math (tick labels such as ``10^{-40}``, axis labels), then
#: lives from one frame to the next instead of being rebuilt for every figure: an explorer
#: of 20 frames renders about a third faster, to the same bytes.
_FRAME_CANVAS = FigureCanvasAgg(Figure())


def figure_png(fig: Figure, dpi: int = 72, palette: bool = True) -> bytes:
    """Render ``fig`` to PNG bytes and close it (frames of :class:`reslab.widgets.FrameExplorer`).

    With ``palette=True`` the image is reduced to 256 colours (median cut, no dithering): plots
    of a few lines on white lose nothing visible and shrink about threefold, which keeps pages
    with dozens of frames light. The PNG carries no timestamp or software metadata, so the same
    figure gives the same bytes.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    dpi = _validate.positive_int("dpi", dpi, minimum=10)
    palette = _validate.boolean("palette", palette)
    buf = io.BytesIO()
    plt.close(fig)
    _FRAME_CANVAS.figure = fig  # render on one shared Agg canvas (see _FRAME_CANVAS)
    fig.set_canvas(_FRAME_CANVAS)
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    if not palette:
        return buf.getvalue()
    from PIL import Image

    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def decades(values: Sequence[float]) -> float:
    """Number of decades spanned by the positive finite ``values`` (0 when fewer than two)."""
    arr = _validate.float_array("values", values)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    if arr.size < 2:
        return 0.0
    return math.log10(float(arr.max()) / float(arr.min()))
