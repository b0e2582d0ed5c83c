"""Preview + thumbnail speed, per core: the project's path against naive Pillow, in one run.

    .venv/bin/python bench/imaging.py [--rounds N] [--input scene|noise] [--keep DIR]

Inputs are generated: a 6000x4000 camera-like JPEG (~8-9 MB, orientation 6, an MPF preview of
1920x1280, smaller than the 2048 target, so the project decodes the file itself) and a RAW-like
NEF with a 3000x2000 embedded JPEG and, as cameras carry beside it, a 640x427 one (the first
thumbnail comes from that). ``--input scene`` (the default) is a photo-like scene
(edges, texture at every scale, sensor noise) at quality 92; ``--input noise`` is the older,
harder input: gradients half drowned in per-pixel noise at quality 85, the same size on disk.
The baseline is what a first version would do: full decode, rotate at full size per the
orientation tag, LANCZOS to 2048, a 400x400 cover thumbnail from the full image, both encoded
progressive at quality 85 with Pillow's encoder (``progressive=True``), as a first version
would. The project encodes with its own extension (imaging/_jpegenc.c: the same pixels, a
shorter scan script) when it is built; the line under the inputs says which ran. Prints
images/s for both and, last, ``ratio: N.NN`` (project / baseline).

Pillow-SIMD, optional and never in the project's venv (it installs over Pillow's ``PIL``):
``scripts/pillow-simd`` builds it from source into ``.venv-simd``; run this script with
``.venv-simd/bin/python`` for its figure. Its resize is SIMD, which helps the baseline's
full-size Lanczos far more than the project's small steps, and the RAW and enhance paths
(larger resamples) more than the JPEG preview (decode and encode are libjpeg-turbo's either way).
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageChops, ImageOps, ImageStat

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from imaging import Imager, ImagingConfig, samples  # noqa: E402
from imaging.render import FAST_ENCODER  # noqa: E402


def baseline(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        im = ImageOps.exif_transpose(im)
        full = im if im.mode == "RGB" else im.convert("RGB")  # no needless full-size copy
    r = 2048 / max(full.size)
    prev = full.resize((round(full.width * r), round(full.height * r)), Image.Resampling.LANCZOS)
    prev.save(io.BytesIO(), "JPEG", quality=85, progressive=True)
    thumb = ImageOps.fit(full, (400, 400), Image.Resampling.LANCZOS)
    thumb.save(io.BytesIO(), "JPEG", quality=85, progressive=True)
    return prev


def psnr(a: Image.Image, b: Image.Image) -> float:
    sum2 = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).sum2
    return 10 * math.log10(255**2 * a.width * a.height * len(sum2) / max(sum(sum2), 1e-9))


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    fn()  # warm: exiftool started, code paths loaded
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--input", choices=("scene", "noise"), default="scene")
    ap.add_argument("--keep", type=Path, default=None, help="write the inputs here and keep them")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = args.keep or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        if args.input == "scene":
            jpg = samples.camera_jpeg(d / "camera.jpg", orientation=6, quality=92,
                                      image=samples.scene((6000, 4000)))
        else:
            jpg = samples.camera_jpeg(d / "camera.jpg", orientation=6, quality=85)
        small = samples.scene((3000, 2000)) if args.input == "scene" else samples.photo((3000, 2000))
        raw = samples.raw_like(d / "camera.nef", small, orientation=6,
                               small=small.resize((640, 427), Image.Resampling.LANCZOS))
        print(f"inputs: {jpg.name} {jpg.stat().st_size / 1e6:.1f} MB 6000x4000 "
              f"(MPF preview 1920x1280, {args.input}), "
              f"{raw.name} {raw.stat().st_size / 1e6:.1f} MB (JpgFromRaw 3000x2000, OtherImage 640x427)")
        encoder = "the project's 5-scan C encoder" if FAST_ENCODER else "Pillow's (C encoder not built)"
        print(f"Pillow {Image.__version__}, rounds {args.rounds}, one thread (= one core); "
              f"project encodes with {encoder}, the baseline with Pillow's progressive=True")
        with Imager(ImagingConfig()) as imager:
            decode_only = timed(lambda: Image.open(jpg).load(), args.rounds)
            base: list[float] = []
            proj: list[float] = []
            for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
                base += timed(lambda: baseline(jpg), 1)
                proj += timed(lambda: imager.preview(jpg), 1)
            raw_prev = timed(lambda: imager.preview(raw), args.rounds)
            enhance = timed(lambda: imager.enhance(jpg), max(3, args.rounds // 2))
            first_thumb = timed(lambda: imager.thumbnail(raw), args.rounds * 2)
            res = imager.preview(jpg)
        ref = baseline(jpg)
        buf = io.BytesIO()
        ref.save(buf, "JPEG", quality=85, progressive=True)
        with Image.open(io.BytesIO(res.preview.data)) as mine, Image.open(buf) as theirs:
            quality, floor = psnr(mine, ref), psnr(theirs, ref)
        methods = ", ".join(f"{a.method_tried}={'ok' if a.success else 'failed'}" for a in res.attempts)
        b, p = statistics.median(base), statistics.median(proj)
        print(f"full decode only (6000x4000):        {statistics.median(decode_only) * 1000:7.1f} ms")
        print(f"baseline preview+thumbnail:          {b * 1000:7.1f} ms  {1 / b:6.2f} images/s")
        print(f"project  preview+thumbnail:          {p * 1000:7.1f} ms  {1 / p:6.2f} images/s  ({methods})")
        print(f"project  preview+thumbnail RAW-like: {statistics.median(raw_prev) * 1000:7.1f} ms  "
              f"{1 / statistics.median(raw_prev):6.2f} images/s (embedded JPEG)")
        print(f"project  enhance 4096 (JPEG):        {statistics.median(enhance) * 1000:7.1f} ms  "
              f"{1 / statistics.median(enhance):6.2f} images/s")
        print(f"time to first thumbnail (embedded):  {statistics.median(first_thumb) * 1000:7.1f} ms")
        print(f"project preview vs baseline's:       {quality:7.1f} dB PSNR against the baseline's Lanczos "
              f"image before encoding (its own q85 JPEG: {floor:.1f} dB)")
        pairs = sorted(bb / pp for bb, pp in zip(base, proj, strict=True))
        print(f"per-round ratios: median {statistics.median(pairs):.2f}, "
              f"min {pairs[0]:.2f}, max {pairs[-1]:.2f}")
        print(f"ratio: {b / p:.2f}")


if __name__ == "__main__":
    main()
