"""``process``: the imaging chain run inline on local files, without Kafka (the operators'
old 'sync driver'), to see why one file makes the previews it does, or fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from imaging import Attempt, Imager, ImagingConfig, ImagingError

from .context import EXIT_FAILED, Ctx, pass_ctx


def _line(a: Attempt) -> str:
    ok = "ok  " if a.success else "FAIL"
    size = f" {a.width}x{a.height} {a.size_bytes or 0}B" if a.width else ""
    why = f"  ({a.failure_reason})" if a.failure_reason else ""
    return f"  {a.trace_type:22} {a.method_order} {a.method_tried:22} {ok} {a.duration_ms:8.1f} ms{size}{why}"


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("processed"),
              show_default=True, help="Folder for the outputs: one sub-folder per input file.")
@click.option("--enhance/--no-enhance", default=False, help="Also make the enhanced preview.")
@click.option("--json", "as_json", is_flag=True, help="Print attempt records as JSON lines.")
@pass_ctx
def process(ctx: Ctx, paths: tuple[Path, ...], out_dir: Path, enhance: bool, as_json: bool) -> None:
    """Run preview, thumbnail, metadata (and enhance) on files here, printing every attempt.

    Writes preview.jpg, thumbnail.jpg, metadata.json (and enhanced.jpg) under OUT/<file name>/.
    Exit code 1 if any file failed; the error class says whether a retry could help.

    Example: prophoto-ingest process IMG_0001.CR3 holiday.jpg --out /tmp/look
    """
    failed = 0
    with Imager(ImagingConfig(**ctx.settings.imaging.model_dump())) as imager:
        for path in paths:
            dest = out_dir / path.name.replace("/", "_")
            attempts: list[Attempt] = []
            error: ImagingError | None = None
            try:
                prev = imager.preview(path)
                attempts += prev.attempts
                dest.mkdir(parents=True, exist_ok=True)
                (dest / "preview.jpg").write_bytes(prev.preview.data)
                (dest / "thumbnail.jpg").write_bytes(prev.thumbnail.data)
                meta = imager.metadata(path)
                attempts += meta.attempts
                (dest / "metadata.json").write_text(json.dumps(meta.metadata.as_json(), indent=2) + "\n")
                if enhance:
                    enh = imager.enhance(path)
                    attempts += enh.attempts
                    (dest / "enhanced.jpg").write_bytes(enh.image.data)
            except ImagingError as exc:
                attempts += exc.attempts
                error = exc
            except OSError as exc:  # the output folder, not the image
                click.secho(f"error: {exc}", fg="red", err=True)
                sys.exit(EXIT_FAILED)
            _report(path, dest, attempts, error, as_json)
            failed += error is not None
    if failed:
        sys.exit(EXIT_FAILED)


def _report(
    path: Path, dest: Path, attempts: list[Attempt], error: ImagingError | None, as_json: bool
) -> None:
    if as_json:
        for a in attempts:
            click.echo(json.dumps({"file": str(path), **a.__dict__}))
        if error is not None:
            click.echo(json.dumps({"file": str(path), "error": type(error).__name__, "message": str(error),
                                   "retriable": error.retriable}))
        return
    click.echo(f"{path}")
    for a in attempts:
        click.echo(_line(a))
    if error is None:
        click.echo(f"  -> {dest}")
    else:
        kind = "transient, a retry may help" if error.retriable else "permanent"
        click.secho(f"  error: {type(error).__name__} ({kind}): {error}", fg="red")
