"""Figure helpers: log axes keep zeros and infinities visible; PNGs are byte-stable."""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from reslab import plots  # noqa: E402


def test_log_line_marks_zero_and_inf():
    fig, ax = plt.subplots()
    counts = plots.log_line(ax, [0, 1, 2, 3, 4], [1.0, 0.1, 0.0, float("inf"), float("nan")], label="plain")
    assert counts == {"shown": 2, "zero": 1, "nonfinite": 2}
    assert ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == 3  # the line, the zero markers, the overflow markers
    assert lines[1].get_marker() == "v" and lines[2].get_marker() == "^"
    assert "1 exactly 0" in lines[0].get_label() and "2 inf/nan" in lines[0].get_label()
    plt.close(fig)


def test_layer_norm_figure_has_labels_and_family_colours():
    fig = plots.layer_norm_figure({"plain L=3": [1, 0.5, 0.1, 0.0], "residual L=3": [1, 1, 1, 1]}, title="t")
    ax = fig.axes[0]
    assert ax.get_title() == "t" and ax.get_xlabel() and ax.get_ylabel()
    assert ax.get_lines()[0].get_color() == plots.KIND_COLORS["plain"]
    assert ax.get_legend() is not None
    assert plots.figure_png(fig)[:4] == b"\x89PNG"  # the labels' mathtext must render


def test_figure_png_is_deterministic_and_closes():
    def make():
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [0, 1])
        return fig

    a, b = plots.figure_png(make()), plots.figure_png(make())
    assert a[:8] == b"\x89PNG\r\n\x1a\n"
    assert a == b
    assert plt.get_fignums() == []
    full = plots.figure_png(make(), palette=False)
    assert len(a) < len(full)  # the 256-colour palette makes frames smaller
    from PIL import Image

    assert Image.open(io.BytesIO(a)).mode == "P" and Image.open(io.BytesIO(full)).mode == "RGBA"


def test_figure_png_on_the_shared_canvas_gives_the_bytes_of_a_fresh_canvas():
    """Frames render on one Agg canvas (its typeset-math cache lives on): same bytes as a new canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def make(size=(3, 2)):
        fig, ax = plt.subplots(figsize=size)
        ax.plot([1, 2, 3], [1e-30, 1.0, 1e3])
        ax.set_yscale("log")
        ax.set(xlabel="steps $t$", ylabel=r"$\Vert\partial s_t/\partial s_0\Vert_2$", title="T = 25")
        return fig

    fresh = make()
    FigureCanvasAgg(fresh)
    buf = io.BytesIO()
    fresh.savefig(buf, format="png", dpi=72, metadata={"Software": None})
    plt.close(fresh)
    first = plots.figure_png(make(), palette=False)
    plots.figure_png(make((5, 4)), palette=False)  # another size in between
    again = plots.figure_png(make(), palette=False)
    assert first == again == buf.getvalue()
    assert plt.get_fignums() == []


def test_style_uses_colourblind_palette_and_opaque_background():
    plots.use_style()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    assert cycle[:3] == [plots.PALETTE["blue"], plots.PALETTE["orange"], plots.PALETTE["green"]]
    assert plt.rcParams["savefig.facecolor"] == "white"
    assert plots.decades([1e-3, 1.0, 0.0, float("inf")]) == pytest.approx(3.0)


def test_bad_plot_arguments_raise():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="equal length"):
        plots.log_line(ax, [1, 2], [1.0])
    with pytest.raises(TypeError, match="Axes"):
        plots.log_line("ax", [1], [1.0])
    with pytest.raises(ValueError, match="series"):
        plots.layer_norm_figure({}, title="x")
    with pytest.raises(TypeError, match="Figure"):
        plots.figure_png(np.zeros(3))
    with pytest.raises(ValueError, match="dpi"):
        plots.figure_png(fig, dpi=1)
    with pytest.raises(ValueError, match="index_or_name"):
        plots.color("magenta")
    plt.close("all")
