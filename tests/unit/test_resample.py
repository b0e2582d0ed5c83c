"""The plane resample (imaging/_resample.c): Pillow's Image.resize of an L image to the bit,
for every filter, box, scale up or down and row stride; bad arguments refused."""

from __future__ import annotations

import random
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imaging import planes
from tests.support import samples
from tests.support.extensions import require

R = Image.Resampling
FILTERS = [R.BILINEAR, R.BICUBIC, R.LANCZOS, R.BOX, R.HAMMING]


@pytest.fixture(scope="module", params=["avx2", "portable"])
def resample(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """Both horizontal passes: AVX2 (where the CPU has none, the portable one again), and
    the portable one."""
    mod = require(planes._resample, "_resample", "a C compiler")
    had = mod.avx2()
    assert mod.avx2(request.param == "avx2") == (had and request.param == "avx2")
    yield mod
    mod.avx2(had)


PLANE = samples.scene((301, 203)).convert("L")  # detail at every scale, odd both ways


def ours(resample: ModuleType, im: Image.Image, size: tuple[int, int], f: R,
         box: tuple[float, float, float, float], pad: int = 0) -> Image.Image:
    data = im.tobytes()
    if pad:  # the same plane with rows ``pad`` bytes longer than it
        data = b"".join(data[r * im.width:(r + 1) * im.width] + bytes([r % 251]) * pad
                        for r in range(im.height))
    out = resample.resample(data, im.width, im.height, im.width + pad, box, size, int(f))
    return Image.frombytes("L", size, out)


@pytest.mark.parametrize("f", FILTERS)
@pytest.mark.parametrize("size, box", [
    ((273, 185), (0, 0, 301, 203)),            # 1.1x down, a preview's step
    ((100, 67), (0, 0, 301, 203)),             # 3x down
    ((40, 40), (50.5, 0, 253.5, 203)),         # a thumbnail's square, half-pixel box
    ((602, 406), (0, 0, 301, 203)),            # 2x up
    ((151, 102), (0.25, 0, 300.75, 202.5)),    # a chroma plane's box, inside its padding
    ((1, 1), (0, 0, 301, 203)),
    ((301, 203), (0, 0, 301, 203)),            # the same size: the identity
    ((17, 300), (280.25, 3.5, 300.75, 199)),   # a strip, up one way and down the other
])
def test_pillows_pixels_to_the_bit(resample: ModuleType, f: R, size: tuple[int, int],
                                   box: tuple[float, float, float, float]) -> None:
    want = PLANE.resize(size, f, box=box)
    assert ours(resample, PLANE, size, f, box).tobytes() == want.tobytes()
    assert ours(resample, PLANE, size, f, box, pad=19).tobytes() == want.tobytes()


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 70), h=st.integers(1, 70), tw=st.integers(1, 90), th=st.integers(1, 90),
       f=st.sampled_from(FILTERS), seed=st.integers(0, 2**32 - 1), edges=st.data())
def test_any_plane_any_box(resample: ModuleType, w: int, h: int, tw: int, th: int, f: R,
                           seed: int, edges: st.DataObject) -> None:
    rng = random.Random(seed)
    im = Image.frombytes("L", (w, h), bytes(rng.randrange(256) for _ in range(w * h)))
    # on an eighth-pixel grid: exact in the float32 both take the box as
    x0 = edges.draw(st.integers(0, 8 * w - 1))
    y0 = edges.draw(st.integers(0, 8 * h - 1))
    x1 = edges.draw(st.integers(x0 + 1, 8 * w))
    y1 = edges.draw(st.integers(y0 + 1, 8 * h))
    box = (x0 / 8, y0 / 8, x1 / 8, y1 / 8)
    assert ours(resample, im, (tw, th), f, box).tobytes() == im.resize((tw, th), f, box=box).tobytes()


def test_bad_arguments_are_refused(resample: ModuleType) -> None:
    data = PLANE.tobytes()
    ok = (data, 301, 203, 301, (0.0, 0.0, 301.0, 203.0), (100, 60), int(R.BICUBIC))
    resample.resample(*ok)
    bad = [
        ((data[:-1], *ok[1:]), "plane"),
        ((*ok[:3], 300, *ok[4:]), "plane"),
        ((*ok[:1], 0, *ok[2:]), "plane"),
        ((*ok[:4], (0.0, 0.0, 302.5, 203.0), *ok[5:]), "box"),
        ((*ok[:4], (-1.5, 0.0, 301.0, 203.0), *ok[5:]), "box"),
        ((*ok[:4], (5.0, 0.0, 5.0, 203.0), *ok[5:]), "box"),
        ((*ok[:5], (0, 60), *ok[6:]), "output size"),
        ((*ok[:5], (70000, 60), *ok[6:]), "output size"),
        ((*ok[:6], int(R.NEAREST)), "filter"),
        ((*ok[:6], 99), "filter"),
    ]
    for args, match in bad:
        with pytest.raises(ValueError, match=match):
            resample.resample(*args)


def test_a_box_a_sample_past_the_plane_clamps_its_taps(resample: ModuleType) -> None:
    """What Pillow refuses, a 4:2:0 chroma box of an odd side needs (planes.chroma_box): its
    taps are clamped at the edge, so it is the edge-padded plane's resample, give or take
    the weights the clamp drops (within a level or two on this detail)."""
    box = (-0.5, -0.75, 301.5, 203.75)
    got = ours(resample, PLANE, (150, 101), R.BICUBIC, box)
    padded = planes.Plane.of(PLANE).edge_padded(2).image()
    want = padded.resize((150, 101), R.BICUBIC, box=tuple(v + 2 for v in box))
    diff = [abs(a - b) for a, b in zip(got.tobytes(), want.tobytes(), strict=True)]
    assert max(diff) <= 8 and sum(diff) / len(diff) < 0.5
    # inside, every sample is the padded one's
    inner = (slice(2, 148), slice(2, 99))
    g, w = got.load(), want.load()
    assert all(g[x, y] == w[x, y] for x in range(inner[0].start, inner[0].stop)
               for y in range(inner[1].start, inner[1].stop))


def test_planes_resize_reduces_as_pillow_then_resamples_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thumbnail's reducing_gap step is Pillow's box reduce, as Image.resize takes it; what
    is left is the C resample's, from the reduced plane: Pillow's pixels either way."""
    calls: list[object] = []
    if planes._resample is not None:
        real = planes._resample.resample
        monkeypatch.setattr(planes._resample, "resample", lambda *a: calls.append(a) or real(*a))
    plane = planes.Plane.of(PLANE)
    box = (0.0, 0.0, 301.0, 203.0)
    a = plane.resize((60, 40), R.LANCZOS, box, reducing_gap=1.5)
    assert a.image().tobytes() == PLANE.resize((60, 40), R.LANCZOS, box=box, reducing_gap=1.5).tobytes()
    on = planes._resample is not None
    # from the 3x2 reduced plane (101x68), the box shifted and scaled into it
    assert len(calls) == on and (not on or calls[0][1:3] == (101, 68))  # type: ignore[index]
    b = plane.resize((273, 185), R.BILINEAR, box, reducing_gap=3.0)
    assert b.image().tobytes() == PLANE.resize((273, 185), R.BILINEAR, box=box, reducing_gap=3.0).tobytes()
    assert len(calls) == 2 * on
