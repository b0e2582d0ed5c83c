"""What the web application does on upload, confirm and enhance: stage the file in the
uploads area and build the event. The CLI uses it; so can an integration."""

from __future__ import annotations

import mimetypes
import uuid as uuid_mod
from pathlib import Path

from .errors import SourceMissing
from .events import EnhanceRequested, IngestRequested, UploadReceived
from .storage import LocalStorage, shard


def stage_upload(storage: LocalStorage, src: Path, *, owner_id: str | None = None,
                 gallery_id: str | None = None, image_uuid: str | None = None) -> UploadReceived:
    """Copy ``src`` into the uploads area under a new UUID; keep the event beside it."""
    if not src.is_file():
        raise SourceMissing(f"not a file: {src}")
    uid = image_uuid or str(uuid_mod.uuid4())
    dest = storage.upload_path(uid, src.name)
    storage.copy_in(src, dest)
    event = UploadReceived(
        uuid=uid,
        path=storage.relative(dest),
        original_filename=src.name[:255],
        content_type=mimetypes.guess_type(src.name)[0],
        size=dest.stat().st_size,
        owner_id=owner_id,
        gallery_id=gallery_id,
    )
    storage.write_bytes(_sidecar(storage, uid), event.model_dump_json().encode())
    return event


def unstage_upload(storage: LocalStorage, event: UploadReceived) -> None:
    """Remove a staged upload whose event could not be published."""
    storage.own_upload(event.uuid, event.path).unlink(missing_ok=True)
    _sidecar(storage, event.uuid).unlink(missing_ok=True)


def _sidecar(storage: LocalStorage, uid: str) -> Path:
    return storage.root / "uploads" / shard(uid) / f"{uid}.event.json"


def find_upload(storage: LocalStorage, image_uuid: str) -> UploadReceived:
    """The upload event staged for a UUID (the web app would read it from its database)."""
    uid = str(uuid_mod.UUID(image_uuid))
    path = _sidecar(storage, uid)
    if not path.is_file():
        raise SourceMissing(f"no staged upload for {uid} (was it uploaded with this storage root?)")
    return UploadReceived.model_validate_json(path.read_bytes())


def ingest_request(upload: UploadReceived) -> IngestRequested:
    return IngestRequested(uuid=upload.uuid, path=upload.path, original_filename=upload.original_filename,
                           owner_id=upload.owner_id, gallery_id=upload.gallery_id)


def enhance_request(upload: UploadReceived, long_edge: int | None = None) -> EnhanceRequested:
    return EnhanceRequested(uuid=upload.uuid, path=upload.path, long_edge=long_edge)
