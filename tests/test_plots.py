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
    with plt.rc_context():  # the style must not leak into later tests
        plots.use_style()
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        assert cycle[:3] == [plots.PALETTE["blue"], plots.PALETTE["orange"], plots.PALETTE["green"]]
        assert plt.rcParams["savefig.facecolor"] == "white"
    assert plots.decades([1e-3, 1.0, 0.0, float("inf")]) == pytest.approx(3.0)
    # fewer than two positive finite values span no decades (an all-overflowed series is not "3 decades")
    assert plots.decades([]) == plots.decades([5.0]) == plots.decades([0.0, float("inf"), float("nan")]) == 0.0


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


# --- log_line: what the log axis cannot show stays visible, on the axes' edges ----------------


def _display(line):
    """The line's points in display (pixel) coordinates."""
    return line.get_transform().transform(np.column_stack([line.get_xdata(), line.get_ydata()]))


def test_log_line_puts_zeros_on_bottom_edge_and_overflow_on_top_edge():
    fig, ax = plt.subplots(figsize=(3, 2))
    x = [1, 2, 4, 8, 16, 32]  # e.g. depths
    y = [1.0, 0.1, 0.0, -2.0, float("inf"), float("nan")]
    counts = plots.log_line(ax, x, y, label="plain-8")
    # negatives count with the zeros: a log axis can show neither
    assert counts == {"shown": 2, "zero": 2, "nonfinite": 2}
    line, low, high = ax.get_lines()
    assert list(line.get_xdata()) == [1.0, 2.0] and list(line.get_ydata()) == [1.0, 0.1]
    assert line.get_label() == "plain-8 (2 exactly 0, 2 inf/nan)"
    assert (low.get_marker(), high.get_marker()) == ("v", "^")
    assert list(low.get_xdata()) == [4.0, 8.0] and list(high.get_xdata()) == [16.0, 32.0]
    # the markers wear the line's colour and are not clipped by the axes they sit on
    assert low.get_color() == high.get_color() == line.get_color()
    assert low.get_clip_on() is False and high.get_clip_on() is False
    fig.canvas.draw()
    box = ax.get_window_extent()
    for marker, edge_y, xs in ((low, box.y0, [4, 8]), (high, box.y1, [16, 32])):
        pts = _display(marker)
        assert np.allclose(pts[:, 1], edge_y)  # on the edge, whatever the y limits
        assert np.allclose(pts[:, 0], ax.transData.transform(np.column_stack([xs, [1.0, 1.0]]))[:, 0])
    plt.close(fig)


def test_log_line_edge_markers_keep_their_size_and_follow_a_given_colour():
    with plt.rc_context({"lines.markersize": 2}):
        fig, ax = plt.subplots()
        plots.log_line(ax, [0, 1, 2], [0.0, 1.0, float("inf")], color="#123456")
    line, low, high = ax.get_lines()
    assert line.get_color() == low.get_color() == high.get_color() == "#123456"
    assert low.get_markersize() == high.get_markersize() == 6
    plt.close(fig)


def test_log_line_labels():
    fig, ax = plt.subplots()
    plots.log_line(ax, [0, 1], [1.0, 2.0], label="residual")  # nothing hidden: label unchanged
    plots.log_line(ax, [0, 1], [1.0, 0.0], label="plain")
    plots.log_line(ax, [0, 1], [float("nan"), 2.0], label="highway")
    plots.log_line(ax, [0, 1], [0.0, float("inf")])  # unlabelled: no legend entry, even with notes
    assert ax.get_legend_handles_labels()[1] == ["residual", "plain (1 exactly 0)", "highway (1 inf/nan)"]
    plt.close(fig)


def test_log_line_converts_exact_integers_and_needs_1d_data():
    from math import comb

    fig, ax = plt.subplots()
    # numbers of paths of each length through 80 blocks: exact integers far beyond int64
    counts = [comb(80, k) for k in range(81)]
    assert plots.log_line(ax, range(81), counts) == {"shown": 81, "zero": 0, "nonfinite": 0}
    assert ax.get_lines()[0].get_ydata()[40] == pytest.approx(float(comb(80, 40)))
    with pytest.raises(ValueError, match="1-D"):
        plots.log_line(ax, [[0, 1]], [[1.0, 2.0]])
    plt.close(fig)


def test_decades_counts_the_span_of_positive_finite_values():
    from math import comb

    assert plots.decades([1.0, 100.0]) == pytest.approx(2.0)
    assert plots.decades([0.01, 0.1, 0.0, -5.0, float("nan")]) == pytest.approx(1.0)
    assert plots.decades([5.0]) == plots.decades([]) == 0.0  # fewer than two values
    assert plots.decades([0.0, 0.0, -1.0]) == 0.0  # zeros span nothing
    assert plots.decades([0.0, 5.0, float("inf")]) == 0.0
    # exact integers beyond int64 (path counts) are converted, not refused
    assert plots.decades([comb(100, k) for k in range(101)]) == pytest.approx(29.0039, abs=1e-4)


# --- layer_norm_figure ------------------------------------------------------------------------


def test_layer_norm_figure_text_and_default_labels():
    fig = plots.layer_norm_figure({"plain-4": [1.0, 0.5, 0.25, 0.125, 0.0625]}, title="depth 4", ylim=(1e-3, 10.0))
    ax = fig.axes[0]
    assert ax.get_title() == "depth 4"
    assert ax.get_xlabel() == "layer $l$ (0 = input)"
    assert ax.get_ylabel() == r"gradient norm $\|\delta_l\|$"
    assert ax.get_yscale() == "log"
    assert ax.get_ylim() == pytest.approx((1e-3, 10.0))
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0, 1, 2, 3, 4]  # layer 0 is the input
    assert line.get_marker() == "." and line.get_markersize() == 3  # one small dot per layer
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain-4"]
    plt.close(fig)


def test_layer_norm_figure_family_colours_only_for_a_two_way_comparison():
    two = plots.layer_norm_figure({"residual-16": [1, 1, 1], "plain-16": [1, 0.1, 0.01]}, title="t", ylabel="activation norm")
    ax = two.axes[0]
    assert [l.get_color() for l in ax.get_lines()] == [plots.KIND_COLORS["residual"], plots.KIND_COLORS["plain"]]
    assert ax.get_ylabel() == "activation norm"
    plt.close(two)
    # more than two series, or labels that name no family: the palette cycle, in order
    three = plots.layer_norm_figure({"plain": [1, 2], "residual": [1, 2], "highway": [1, 2]}, title="t")
    assert [l.get_color() for l in three.axes[0].get_lines()] == [plots.color(0), plots.color(1), plots.color(2)]
    plt.close(three)
    other = plots.layer_norm_figure({"": [1, 2], "L=3 residual": [1, 2]}, title="t")
    assert [l.get_color() for l in other.axes[0].get_lines()] == [plots.color(0), plots.color(1)]
    plt.close(other)


def test_layer_norm_figure_draws_into_a_given_axes_and_legend_avoids_the_data():
    # in the book's style (as after reslab.setup()), with a default legend place that would sit on the data
    with plt.rc_context():
        plots.use_style()
        plt.rcParams["legend.loc"] = "upper left"
        fig, (left, right) = plt.subplots(1, 2, figsize=(6, 3))
        out = plots.layer_norm_figure({"a rather long legend label": list(np.logspace(0, -9, 10))}, title="t", ax=right)
        assert out is fig and left.get_lines() == [] and len(right.get_lines()) == 1
        fig.canvas.draw()
        box = right.get_legend().get_window_extent()
        assert not any(box.contains(px, py) for px, py in _display(right.get_lines()[0]))  # loc="best"
    plt.close(fig)


# --- figure_png -------------------------------------------------------------------------------


def _small_figure(w=2.0, h=1.0):
    fig, ax = plt.subplots(figsize=(w, h))
    ax.plot([0, 1], [0, 1])
    return fig


def _png_size(png):
    from PIL import Image

    return Image.open(io.BytesIO(png)).size


def test_figure_png_pixel_size_follows_dpi():
    assert _png_size(plots.figure_png(_small_figure())) == (144, 72)  # 72 dpi by default
    assert _png_size(plots.figure_png(_small_figure(), dpi=36)) == (72, 36)
    assert _png_size(plots.figure_png(_small_figure(), dpi=10, palette=False)) == (20, 10)  # the smallest dpi


def test_figure_png_is_png_without_software_metadata_whatever_the_rc():
    with plt.rc_context({"savefig.format": "svg", "savefig.dpi": 200}):
        raw = plots.figure_png(_small_figure(), palette=False)
        small = plots.figure_png(_small_figure())
    for png in (raw, small):
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"Software" not in png and b"matplotlib" not in png
    assert _png_size(raw) == (144, 72)


def test_figure_png_closes_the_figure_it_was_given_only():
    given = _small_figure()
    other = plt.figure()  # the current figure
    plots.figure_png(given)
    assert not plt.fignum_exists(given.number) and plt.fignum_exists(other.number)
    plt.close(other)


def test_figure_png_frame_is_already_optimized():
    from PIL import Image

    # a typical frame is already as small as PIL's PNG optimizer makes it
    frame = plots.figure_png(plots.layer_norm_figure({"plain-32": list(np.logspace(0, -6, 33)), "residual-32": [1.0] * 33}, title="depth 32"))
    again = io.BytesIO()
    Image.open(io.BytesIO(frame)).save(again, format="PNG", optimize=True)
    assert len(frame) <= len(again.getvalue())


# --- colours and style ------------------------------------------------------------------------


def test_color_by_name_and_by_cycle_position():
    assert plots.color("blue") == "#0072B2" and plots.color("vermillion") == plots.KIND_COLORS["plain"]
    assert [plots.color(i) for i in range(3)] == [plots.PALETTE["blue"], plots.PALETTE["orange"], plots.PALETTE["green"]]
    assert plots.color(8) == plots.color(0) and plots.color(-1) == plots.PALETTE["yellow"]  # the cycle wraps
    for bad in (True, 1.0, None):
        with pytest.raises(TypeError, match="index_or_name"):
            plots.color(bad)


def test_style_gives_the_book_figure_look():
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    with plt.rc_context():
        plots.use_style()
        fig, ax = plt.subplots()
        assert tuple(fig.get_size_inches()) == (6.4, 3.6) and fig.dpi == 90
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        assert _png_size(buf.getvalue()) == (576, 324)  # saved at 90 dpi
        assert plt.rcParams["figure.facecolor"] == plt.rcParams["axes.facecolor"] == "white"  # opaque on dark themes
        assert fig.get_facecolor() == ax.get_facecolor() == (1.0, 1.0, 1.0, 1.0)
        assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
        assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
        assert ax.spines["left"].get_visible() and ax.spines["bottom"].get_visible()
        grid = ax.get_xgridlines() + ax.get_ygridlines()
        assert grid and all(g.get_visible() and g.get_alpha() == 0.3 for g in grid)
        (line,) = ax.plot([0, 1], [0, 1], label="a")
        legend = ax.legend()
        assert ax.set_title("t").get_fontsize() == 11 and ax.set_xlabel("x").get_fontsize() == 10
        assert ax.get_xticklabels()[0].get_fontsize() == 10  # font.size
        assert legend.get_texts()[0].get_fontsize() == 8 and legend.get_frame().get_alpha() == 0.9
        # a fixed SVG hash salt: the ids in SVG output do not change from run to run
        assert plt.rcParams["svg.hashsalt"] == "reslab"
        plt.close(fig)
        svgs = []
        for _ in range(2):
            out = io.BytesIO()
            one = _small_figure()
            one.savefig(out, format="svg", metadata={"Date": None})
            plt.close(one)
            svgs.append(out.getvalue())
        assert b"clip-path" in svgs[0] and svgs[0] == svgs[1]


def test_layer_norm_figure_takes_blank_labels_with_palette_colours():
    fig = plots.layer_norm_figure({"  ": [1.0, 0.5], "": [1.0, 1.0]}, title="blank labels")
    lines = fig.axes[0].get_lines()
    assert [line.get_color() for line in lines] == [plots.color(0), plots.color(1)]
    plt.close(fig)
