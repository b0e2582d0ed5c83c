"""Preview + thumbnail speed, per core: the project's path against naive Pillow, in one run.

    .venv/bin/python bench/imaging.py [--rounds N] [--input scene|noise] [--keep DIR] [--scales]
                                      [--pillow-decode]

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

Beside them, in the same interleaved rounds: the decode floor, libjpeg-turbo's own 1/2-scale
decode of the same file and nothing else (the C extension's decode-only entry point,
imaging/_jpegdec.c; Pillow's draft decode when it is not built), printed as
``floor_ratio: N.NN`` (project preview+thumbnail / floor; lower is better), and enhance to
4096 at quality 92 against the naive way as the preview baseline does it (full decode, rotate,
LANCZOS, Pillow's progressive encoder at the same quality), ``enhance_ratio: N.NN`` (naive /
project), and against the plain way at its cheapest (rotated after the resize, Pillow's
baseline encoder; the project's output is progressive), ``enhance_lean_ratio: N.NN``. PSNR is against the
baseline's Lanczos-from-full image before encoding, for the preview and for enhance. Peak RSS
per job is measured in a fresh process per job (``--rss-job``, run by this script): what the
process held at its peak, and how much the job added over the idle process. ``--scales``
also times libjpeg-turbo's decode at every N/8, which render.TURBO_SCALES is chosen from.
``--pillow-decode`` runs the project without its fast decoder (Pillow decodes, as before it
existed; the floor is still the extension's): the before-and-after in one harness.

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
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageChops, ImageOps, ImageStat

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from imaging import Imager, ImagingConfig, render  # noqa: E402
from imaging.render import FAST_DECODER, FAST_ENCODER  # noqa: E402
from tests.support import samples  # noqa: E402


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


def naive_enhance(path: Path) -> Image.Image:
    """Enhance to 4096 as the preview baseline does it (a first version): full decode, rotate
    at full size, LANCZOS, Pillow's progressive encoder at the same quality, 92."""
    with Image.open(path) as im:
        im.load()
        full = ImageOps.exif_transpose(im)
    r = 4096 / max(full.size)
    out = full.resize((round(full.width * r), round(full.height * r)), Image.Resampling.LANCZOS)
    out.save(io.BytesIO(), "JPEG", quality=92, progressive=True)
    return out


def lean_enhance(path: Path) -> Image.Image:
    """The plain way at its cheapest, so no ratio is only flattering: full decode, LANCZOS,
    turned upright after the resize, Pillow's baseline (not progressive) encoder at q92."""
    with Image.open(path) as im:
        im.load()
        r = 4096 / max(im.size)
        out = im.resize((round(im.width * r), round(im.height * r)), Image.Resampling.LANCZOS)
        out.info["exif"] = im.info.get("exif", b"")
        out = ImageOps.exif_transpose(out)
    out.save(io.BytesIO(), "JPEG", quality=92)
    return out


_FLOOR = render._jpegdec  # kept when --pillow-decode takes the project's away


def floor_decode(data: bytes) -> None:
    """The decoder's floor: a 1/2-scale decode of the file and nothing else."""
    if _FLOOR is not None:
        _FLOOR.decode(data, 4)
        return
    with Image.open(io.BytesIO(data)) as im:
        im.draft(im.mode, (im.width // 2, im.height // 2))
        im.load()


def peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    an exec from the parent that spawned it (here, a bench holding 6000x4000 images)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_job(job: str, path: Path) -> None:
    """Run one job in this (fresh) process; print peak RSS in MB and what the job added."""
    with Imager(ImagingConfig()) as imager:
        imager.metadata(path)  # exiftool started, modules loaded: the idle worker
        idle = peak_rss_mb()
        imager.preview(path) if job == "preview" else imager.enhance(path)
        peak = peak_rss_mb()
    print(f"{peak:.1f} {peak - idle:.1f}")


def measure_rss(job: str, path: Path) -> tuple[float, float]:
    flags = ["--pillow-decode"] if render._jpegdec is None else []
    out = subprocess.run([sys.executable, __file__, *flags, "--rss-job", job, str(path)], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def psnr(a: Image.Image, b: Image.Image) -> float:
    sum2 = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).sum2
    return 10 * math.log10(255**2 * a.width * a.height * len(sum2) / max(sum(sum2), 1e-9))


# CPU seconds of each timed call, by what ran: on a machine shared with other work the wall
# time is partly the neighbours', this process's CPU time much less so (the timed calls are
# single-threaded; exiftool is not called on these paths).
CPU: dict[str, list[float]] = {}


def cpu_timed(key: str, fn: Callable[[], object]) -> list[float]:
    """One call: its wall time in a list, its CPU time appended to CPU[key]."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - w0
    CPU.setdefault(key, []).append(time.process_time() - c0)
    return [wall]


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
    ap.add_argument("--scales", action="store_true", help="also time libjpeg-turbo's decode at each N/8")
    ap.add_argument("--pillow-decode", action="store_true", help="the project without its fast decoder")
    ap.add_argument("--rss-job", nargs=2, metavar=("JOB", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pillow_decode:
        render._jpegdec = None  # type: ignore[assignment]
    if args.rss_job:
        rss_job(args.rss_job[0], Path(args.rss_job[1]))
        return
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
        decoder = "libjpeg-turbo straight (imaging._jpegdec)" if _FLOOR else "Pillow's (not built)"
        project = ("Pillow (--pillow-decode)" if render._jpegdec is None
                   else "libjpeg-turbo straight" if FAST_DECODER else "Pillow (not built)")
        print(f"Pillow {Image.__version__}, rounds {args.rounds}, one thread (= one core); "
              f"project encodes with {encoder}, the baseline with Pillow's progressive=True; "
              f"the floor decodes with {decoder}; the project decodes with {project}")
        data = jpg.read_bytes()
        with Imager(ImagingConfig()) as imager:
            decode_only = timed(lambda: Image.open(jpg).load(), args.rounds)
            base: list[float] = []
            proj: list[float] = []
            floor: list[float] = []
            naive_e: list[float] = []
            lean_e: list[float] = []
            proj_e: list[float] = []
            timed(lambda: floor_decode(data), 1)
            for _ in range(args.rounds):  # interleaved, so machine noise hits all alike
                base += cpu_timed("base", lambda: baseline(jpg))
                floor += cpu_timed("floor", lambda: floor_decode(data))
                proj += cpu_timed("proj", lambda: imager.preview(jpg))
                floor += cpu_timed("floor", lambda: floor_decode(data))
            for _ in range(max(3, args.rounds // 2)):
                naive_e += cpu_timed("naive_e", lambda: naive_enhance(jpg))
                proj_e += cpu_timed("proj_e", lambda: imager.enhance(jpg))
                lean_e += cpu_timed("lean_e", lambda: lean_enhance(jpg))
            raw_prev = timed(lambda: imager.preview(raw), args.rounds)
            first_thumb = timed(lambda: imager.thumbnail(raw), args.rounds * 2)
            scales: dict[int, list[float]] = {n: [] for n in range(1, 9)}
            if args.scales and _FLOOR is not None:
                dec = _FLOOR
                for _ in range(args.rounds):
                    for n in scales:
                        scales[n] += timed(lambda n=n: dec.decode(data, n), 1)  # type: ignore[misc]
            res = imager.preview(jpg)
            enh = imager.enhance(jpg)
        ref = baseline(jpg)
        buf = io.BytesIO()
        ref.save(buf, "JPEG", quality=85, progressive=True)
        with Image.open(io.BytesIO(res.preview.data)) as mine, Image.open(buf) as theirs:
            quality, own = psnr(mine, ref), psnr(theirs, ref)
        ref_e = naive_enhance(jpg)
        buf = io.BytesIO()
        ref_e.save(buf, "JPEG", quality=92, progressive=True)
        with Image.open(io.BytesIO(enh.image.data)) as mine, Image.open(buf) as theirs:
            quality_e, own_e = psnr(mine, ref_e), psnr(theirs, ref_e)
        rss = {job: measure_rss(job, jpg) for job in ("preview", "enhance")}
        methods = ", ".join(f"{a.method_tried}={'ok' if a.success else 'failed'}" for a in res.attempts)
        methods_e = ", ".join(f"{a.method_tried}={'ok' if a.success else 'failed'}" for a in enh.attempts)
        b, p, f = statistics.median(base), statistics.median(proj), statistics.median(floor)
        ne, pe, le = statistics.median(naive_e), statistics.median(proj_e), statistics.median(lean_e)
        print(f"full decode only (6000x4000, Pillow): {statistics.median(decode_only) * 1000:7.1f} ms")
        print(f"floor: 1/2-scale decode only:        {f * 1000:7.1f} ms  (min {min(floor) * 1000:.1f})")
        print(f"baseline preview+thumbnail:          {b * 1000:7.1f} ms  {1 / b:6.2f} images/s")
        print(f"project  preview+thumbnail:          {p * 1000:7.1f} ms  {1 / p:6.2f} images/s  ({methods})")
        print(f"project  preview+thumbnail RAW-like: {statistics.median(raw_prev) * 1000:7.1f} ms  "
              f"{1 / statistics.median(raw_prev):6.2f} images/s (embedded JPEG)")
        print(f"naive    enhance 4096 q92:           {ne * 1000:7.1f} ms  {1 / ne:6.2f} images/s")
        print(f"lean     enhance 4096 q92:           {le * 1000:7.1f} ms  {1 / le:6.2f} images/s")
        print(f"project  enhance 4096 q92:           {pe * 1000:7.1f} ms  {1 / pe:6.2f} images/s  "
              f"({methods_e})")
        print(f"time to first thumbnail (embedded):  {statistics.median(first_thumb) * 1000:7.1f} ms")
        if args.scales and _FLOOR is not None:
            print("libjpeg-turbo decode by scale:       " + ", ".join(
                f"{n}/8 {statistics.median(v) * 1000:.0f} ms" for n, v in scales.items()))
        print(f"project preview vs baseline's:       {quality:7.1f} dB PSNR against the baseline's Lanczos "
              f"image before encoding (its own q85 JPEG: {own:.1f} dB)")
        print(f"project enhance vs naive's:          {quality_e:7.1f} dB PSNR against the naive Lanczos "
              f"image before encoding (its own q92 JPEG: {own_e:.1f} dB)")
        for job, (peak, added) in rss.items():
            print(f"peak RSS, one {job} job:             {peak:7.1f} MB in a fresh process "
                  f"({added:.1f} MB over the idle worker)")
        pairs = sorted(bb / pp for bb, pp in zip(base, proj, strict=True))
        print(f"per-round ratios: median {statistics.median(pairs):.2f}, "
              f"min {pairs[0]:.2f}, max {pairs[-1]:.2f}")
        # each preview between two floor decodes: its ratio to their mean
        fpairs = sorted(pp / ((floor[2 * i] + floor[2 * i + 1]) / 2) for i, pp in enumerate(proj))
        print(f"per-round floor ratios: median {statistics.median(fpairs):.2f}, "
              f"min {fpairs[0]:.2f}, max {fpairs[-1]:.2f}")
        for label, ref_t in (("enhance", naive_e), ("lean enhance", lean_e)):
            epairs = sorted(nn / pp for nn, pp in zip(ref_t, proj_e, strict=True))
            print(f"per-round {label} ratios: median {statistics.median(epairs):.2f}, "
                  f"min {epairs[0]:.2f}, max {epairs[-1]:.2f}")
        cm = {k: statistics.median(v) for k, v in CPU.items()}
        print(f"CPU time (median ms): floor {cm['floor'] * 1000:.1f}, "
              f"project preview {cm['proj'] * 1000:.1f}, "
              f"baseline {cm['base'] * 1000:.1f}, project enhance {cm['proj_e'] * 1000:.1f}, naive "
              f"{cm['naive_e'] * 1000:.1f}, lean {cm['lean_e'] * 1000:.1f}: floor ratio "
              f"{cm['proj'] / cm['floor']:.2f}, ratio {cm['base'] / cm['proj']:.2f}, enhance "
              f"{cm['naive_e'] / cm['proj_e']:.2f}, lean {cm['lean_e'] / cm['proj_e']:.2f}")
        print(f"floor_ratio: {p / f:.2f}")
        print(f"enhance_ratio: {ne / pe:.2f}")
        print(f"enhance_lean_ratio: {le / pe:.2f}")
        print(f"ratio: {b / p:.2f}")


if __name__ == "__main__":
    main()
