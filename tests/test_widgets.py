"""FrameExplorer: one frame per grid point, every slider linked to its stacks."""

import base64

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import ipywidgets as widgets  # noqa: E402
import pytest  # noqa: E402

from reslab.widgets import FrameExplorer  # noqa: E402


def _render(**point):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.set_title(repr(sorted(point.items())))
    ax.plot([0, 1], [0, sum(float(v) for v in point.values())])
    return fig


def test_one_parameter_explorer():
    ex = FrameExplorer(_render, {"depth": [1, 10, 100]})
    assert ex.n_frames == 3 and len(ex.sliders) == 1
    stack = ex.stacks[0]
    assert isinstance(stack, widgets.Stack) and len(stack.children) == 3
    assert [c for c in stack.children] == [ex.frame(depth=d) for d in (1, 10, 100)]
    (link,) = ex.links
    assert link.source == (ex.sliders[0], "index") and link.target == (stack, "selected_index")
    assert ex.sliders[0].options == (("1", 0), ("10", 1), ("100", 2))
    # distinct figures give distinct PNG frames
    assert len(set(ex.pngs.values())) == 3
    assert all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in ex.pngs.values())
    # each frame is an <img> with the PNG inlined, its grid index as a class, and alt text
    html = ex.frame(depth=10).value
    assert html.startswith('<img class="reslab-frame reslab-frame-1" alt="depth = 10"')
    assert base64.b64encode(ex.pngs[(10,)]).decode() in html


def test_two_parameter_explorer_nests_stacks_and_links_each():
    ex = FrameExplorer(_render, {"depth": [2, 4], "gain": [0.9, 1.0, 1.1]}, alt="depth {depth}, gain {gain}")
    assert ex.n_frames == 6
    outer, *inner = ex.stacks
    assert len(outer.children) == 2 and all(len(s.children) == 3 for s in inner)
    assert outer.children[1].children[2] is ex.frame(depth=4, gain=1.1)
    sources = [(l.source[0], l.target[0]) for l in ex.links]
    assert (ex.sliders[0], outer) in sources
    assert all((ex.sliders[1], s) in sources for s in inner)
    assert len(ex.links) == 1 + len(inner)
    assert ex.frame(depth=2, gain=0.9).description_text == "depth 2, gain 0.9"
    assert 'alt="depth 2, gain 0.9"' in ex.frame(depth=2, gain=0.9).value
    assert ex.children[-1] is outer


def test_render_may_return_png_bytes():
    png = b"\x89PNG\r\n\x1a\nfake"
    ex = FrameExplorer(lambda k: png, {"k": ["a", "b"]})
    assert all(p == png for p in ex.pngs.values())


@pytest.mark.parametrize(
    "render, grid, error, needle",
    [
        ("nope", {"a": [1]}, TypeError, "render"),
        (_render, [("a", [1])], TypeError, "grid"),
        (_render, {}, ValueError, "1 or 2 parameters"),
        (_render, {"a": [1], "b": [1], "c": [1]}, ValueError, "1 or 2 parameters"),
        (_render, {"a": []}, ValueError, "non-empty"),
        (_render, {"not valid": [1]}, ValueError, "identifiers"),
        (lambda a: 42, {"a": [1]}, TypeError, "Figure or PNG bytes"),
    ],
)
def test_bad_explorer_arguments_raise(render, grid, error, needle):
    with pytest.raises(error, match=needle):
        FrameExplorer(render, grid)


def test_alt_text_is_escaped():
    ex = FrameExplorer(_render, {"a": [1]}, alt='a "quoted" <b>{a}</b>')
    assert 'alt="a &quot;quoted&quot; &lt;b&gt;1&lt;/b&gt;"' in ex.frame(a=1).value


def test_frame_lookup_validates_point():
    ex = FrameExplorer(_render, {"a": [1, 2]})
    with pytest.raises(ValueError, match="not on the grid"):
        ex.frame(a=3)
    with pytest.raises(ValueError, match="exactly the parameters"):
        ex.frame(b=1)


def _png_size(png):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png)).size


def test_frames_default_to_72_dpi_at_full_width():
    ex = FrameExplorer(_render, {"depth": [1]})
    assert _png_size(ex.pngs[(1,)]) == (144, 108)  # a 2 x 1.5 inch figure at 72 dpi
    assert 'style="width:100%;height:auto;max-width:100%"' in ex.frame(depth=1).value
    small = FrameExplorer(_render, {"depth": [1]}, dpi=36, width="480px")
    assert _png_size(small.pngs[(1,)]) == (72, 54)
    assert 'style="width:480px;' in small.frame(depth=1).value


def test_css_width_is_escaped_inside_the_style_attribute():
    ex = FrameExplorer(lambda a: b"\x89PNG", {"a": [1]}, width='50%" onerror="alert(1)')
    html = ex.frame(a=1).value
    assert 'onerror="' not in html and "50%&quot; onerror=&quot;alert(1)" in html


def test_explorer_and_frames_carry_their_css_classes():
    ex = FrameExplorer(lambda a: b"\x89PNG", {"a": [1, 2]})
    assert "reslab-frame-explorer" in ex._dom_classes  # the browser check finds explorers by it
    assert all("reslab-frame-box" in f._dom_classes for f in ex.frames.values())


def test_sliders_start_on_the_first_frame_and_label_values():
    ex = FrameExplorer(lambda depth, gain: b"\x89PNG", {"depth": [2, 4], "gain": [0.9, 1.0, 1.1]})
    depth, gain = ex.sliders
    assert (depth.description, gain.description) == ("depth", "gain")
    assert gain.options == (("0.9", 0), ("1", 1), ("1.1", 2))  # floats printed with %g
    assert all(s.index == 0 and s.value == 0 for s in ex.sliders)
    assert all(s.selected_index == 0 for s in ex.stacks)  # what each slider shows before it moves
    assert all(s.continuous_update for s in ex.sliders)  # frames switch while dragging
    assert all(s.style.description_width == "initial" for s in ex.sliders)  # long names are not cut
    assert all(s.layout.width == "420px" for s in ex.sliders)
    # default alt text names every parameter; frames are numbered row by row
    last = ex.frame(depth=4, gain=1.1)
    assert last.description_text == "depth = 4, gain = 1.1"
    assert 'class="reslab-frame reslab-frame-5"' in last.value
    one = FrameExplorer(lambda k: b"\x89PNG", {"k": ["a", "b"]})
    assert one.stacks[0].selected_index == 0 and one.sliders[0].index == 0


@pytest.mark.parametrize(
    "grid, kwargs, error, needle",
    [
        ({"a": "abc"}, {}, ValueError, "non-empty list"),
        ({"a": b"ab"}, {}, ValueError, "non-empty list"),
        ({"a": {1, 2}}, {}, ValueError, "non-empty list"),  # a set has no order
        ({1: [1]}, {}, ValueError, "identifiers"),
        ({"a": [1]}, {"width": 480}, TypeError, "width"),
    ],
)
def test_more_bad_explorer_arguments_raise(grid, kwargs, error, needle):
    with pytest.raises(error, match=needle):
        FrameExplorer(lambda **p: b"\x89PNG", grid, **kwargs)
