"""Widgets that respond in the static book: precomputed frames switched in the browser.

:class:`FrameExplorer` renders one PNG per point of a small parameter grid while the notebook
executes, puts the PNGs (as ``<img>`` tags with alt text in ``widgets.HTML``) as the children of a ``widgets.Stack`` and links each
slider's ``index`` to a stack's ``selected_index`` with :func:`ipywidgets.jslink`. The link
lives in the browser, so once nbconvert has saved the widget state into the notebook and
myst-nb has embedded it in the HTML page, moving a slider switches frames with no kernel.
With two parameters the stacks nest: the first slider picks a row of the grid (an inner
``Stack``), the second is linked to every inner stack and picks the frame within it.
"""

from __future__ import annotations

import base64
import html
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from . import _validate
from .plots import figure_png

__all__ = ["FrameExplorer"]


def _frame_widget(png: bytes, alt: str, index: int, width: str) -> widgets.HTML:
    """One frame: an ``<img>`` with the PNG inlined and real alt text.

    An ``HTML`` widget is used rather than ``widgets.Image`` because ``Image`` has no alt text
    (and its tooltip breaks the static-page widget manager); the PNG is base64-encoded either
    way in the saved widget state.
    """
    data = base64.b64encode(png).decode("ascii")
    tag = (
        f'<img class="reslab-frame reslab-frame-{index}" alt="{html.escape(alt, quote=True)}" '
        f'style="width:{html.escape(width, quote=True)};height:auto;max-width:100%" src="data:image/png;base64,{data}">'
    )
    frame = widgets.HTML(value=tag)
    frame.add_class("reslab-frame-box")
    frame.description_text = alt  # plain Python attribute, for tests and notebooks
    return frame


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class FrameExplorer(widgets.VBox):
    """A kernel-free explorer of a one- or two-parameter grid of precomputed figures.

    Args:
        render: called as ``render(**point)`` for every grid point; returns a matplotlib
            ``Figure`` (rendered to PNG and closed) or PNG ``bytes``.
        grid: ordered mapping of one or two parameter names to their non-empty value lists,
            e.g. ``{"depth": [10, 100], "gain": [0.9, 1.0, 1.1]}``.
        dpi: resolution of the frames (``>= 10``); keep frames small, the notebook must stay
            under 3 MB.
        width: CSS width of the image (e.g. ``"100%"`` or ``"480px"``).
        alt: alt-text template for the frames, formatted with the point's parameters.

    Attributes:
        sliders: one ``SelectionSlider`` per parameter, in the order of ``grid``.
        frames: ``{point: widgets.HTML}`` (an ``<img>`` with alt text), ``point`` a tuple of parameter values.
        pngs: ``{point: bytes}``, the PNG of each frame.
        links: the ``jslink`` objects, one per (slider, stack) pair.
    """

    def __init__(
        self,
        render: Callable[..., Figure | bytes],
        grid: Mapping[str, Sequence[Any]],
        *,
        dpi: int = 72,
        width: str = "100%",
        alt: str | None = None,
    ) -> None:
        if not callable(render):
            raise TypeError(f"render must be a callable returning a Figure or PNG bytes, got {type(render).__name__}")
        if not isinstance(grid, Mapping):
            raise TypeError(f"grid must be a mapping of parameter name -> list of values, got {type(grid).__name__}")
        if not 1 <= len(grid) <= 2:
            raise ValueError(f"grid must have 1 or 2 parameters, got {len(grid)}")
        names = list(grid)
        values: list[list[Any]] = []
        for name in names:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"grid keys must be parameter names (identifiers), got {name!r}")
            vals = grid[name]
            if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or len(vals) == 0:
                raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {vals!r}")
            values.append(list(vals))
        dpi = _validate.positive_int("dpi", dpi, minimum=10)
        if not isinstance(width, str):
            raise TypeError(f"width must be a CSS length string, got {type(width).__name__}")
        if alt is not None:
            if not isinstance(alt, str):
                raise TypeError(f"alt must be a str (a format template of the parameters) or None, got {type(alt).__name__}")
            try:
                alt.format(**{name: vals[0] for name, vals in zip(names, values)})
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                raise ValueError(f"alt must be a str.format template using only the parameter names {tuple(names)}, got {alt!r} ({exc!r})") from None
        self.names = names
        self.values = values
        self.frames: dict[tuple[Any, ...], widgets.HTML] = {}
        self.pngs: dict[tuple[Any, ...], bytes] = {}
        for index, point in enumerate(itertools.product(*values)):
            params = dict(zip(names, point))
            out = render(**params)
            png = out if isinstance(out, bytes) else figure_png(out, dpi=dpi) if isinstance(out, Figure) else None
            if png is None:
                raise TypeError(f"render must return a matplotlib Figure or PNG bytes, got {type(out).__name__}")
            description = (alt or ", ".join(f"{k} = {{{k}}}" for k in names)).format(**params)
            self.pngs[point] = png
            self.frames[point] = _frame_widget(png, description, index, width)

        self.sliders = [
            widgets.SelectionSlider(
                options=[(_label(v), i) for i, v in enumerate(vals)],
                value=0,
                description=name,
                continuous_update=True,
                style={"description_width": "initial"},
                layout=widgets.Layout(width="420px"),
            )
            for name, vals in zip(names, values)
        ]
        self.links = []
        if len(names) == 1:
            self.stacks = [widgets.Stack([self.frames[(v,)] for v in values[0]], selected_index=0)]
            self.links.append(widgets.jslink((self.sliders[0], "index"), (self.stacks[0], "selected_index")))
            outer = self.stacks[0]
        else:
            inner = [widgets.Stack([self.frames[(a, b)] for b in values[1]], selected_index=0) for a in values[0]]
            outer = widgets.Stack(inner, selected_index=0)
            self.stacks = [outer, *inner]
            self.links.append(widgets.jslink((self.sliders[0], "index"), (outer, "selected_index")))
            for stack in inner:
                self.links.append(widgets.jslink((self.sliders[1], "index"), (stack, "selected_index")))
        super().__init__([*self.sliders, outer])
        self.add_class("reslab-frame-explorer")

    def frame(self, **point: Any) -> widgets.HTML:
        """The frame shown for the parameter values ``point`` (each must be on the grid)."""
        if set(point) != set(self.names):
            raise ValueError(f"point must name exactly the parameters {self.names}, got {sorted(point)}")
        key = tuple(point[n] for n in self.names)
        if key not in self.frames:
            raise ValueError(f"point {point} is not on the grid {dict(zip(self.names, self.values))}")
        return self.frames[key]

    @property
    def n_frames(self) -> int:
        """Number of precomputed frames (the product of the grid's sizes)."""
        return len(self.frames)
