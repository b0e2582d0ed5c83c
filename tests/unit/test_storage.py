from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.errors import SourceMissing, StorageUnavailable, UnsafePath
from streams.storage import LocalStorage

UID = "0b6f1c2e-9d3a-4f4e-8a1b-2c3d4e5f6a7b"


def test_paths_are_deterministic_and_sharded(tmp_path: Path) -> None:
    st = LocalStorage(tmp_path)
    assert st.preview_path(UID) == tmp_path / "previews/0b/6f" / f"{UID}.jpg"
    assert st.preview_path(UID) == LocalStorage(tmp_path).preview_path(UID)
    assert st.original_path(UID, "IMG_1.CR2").name == "original.cr2"


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../x", ""])
def test_resolve_refuses_escapes(tmp_path: Path, rel: str) -> None:
    with pytest.raises(UnsafePath):
        LocalStorage(tmp_path).resolve(rel)


def test_resolve_refuses_symlink_out_of_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "uploads").mkdir(parents=True)
    os.symlink("/etc", root / "uploads" / "link")
    with pytest.raises(UnsafePath, match="outside the storage root"):
        LocalStorage(root).resolve("uploads/link/passwd")


def test_atomic_write_leaves_no_temp_on_failure(tmp_path: Path) -> None:
    st = LocalStorage(tmp_path)
    dest = st.preview_path(UID)
    with pytest.raises(RuntimeError), st.atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []
    st.write_bytes(dest, b"whole")
    assert dest.read_bytes() == b"whole"
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]


def test_unwritable_storage_is_transient(tmp_path: Path) -> None:
    st = LocalStorage(tmp_path / "file-not-dir")
    (tmp_path / "file-not-dir").write_text("x")
    with pytest.raises(StorageUnavailable) as exc:
        st.write_bytes(st.preview_path(UID), b"x")
    assert exc.value.retriable


def test_source_falls_back_to_permanent_original(tmp_path: Path) -> None:
    st = LocalStorage(tmp_path)
    st.ensure()
    own = f"uploads/0b/6f/{UID}.jpg"
    with pytest.raises(SourceMissing):
        st.source_for(UID, own)
    st.write_bytes(st.original_path(UID, "a.jpg"), b"data")
    assert st.source_for(UID, own) == st.original_path(UID, "a.jpg")


OTHER = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


@pytest.fixture
def two_images(tmp_path: Path) -> LocalStorage:
    """UID has an upload; OTHER is ingested (permanent original) and has a preview."""
    st = LocalStorage(tmp_path / "root")
    st.ensure()
    st.write_bytes(st.upload_path(UID, "a.jpg"), b"mine")
    st.write_bytes(st.original_path(OTHER, "b.jpg"), b"theirs")
    st.write_bytes(st.preview_path(OTHER), b"their preview")
    return st


@pytest.mark.parametrize("rel", [
    f"originals/7c/9e/{OTHER}/original.jpg",  # another image's permanent original
    f"previews/7c/9e/{OTHER}.jpg",  # the previews area
    f"uploads/7c/9e/{OTHER}.jpg",  # another image's upload slot
    f"uploads/0b/6f/{UID}.jpg/../../x",  # (refused at the edge too)
    "uploads/0b/6f/other-name.jpg",  # not this image's name
    f"uploads/0b/6f/{UID}.verylongsuffix",  # not a name upload_path makes
    f"uploads/{UID}.jpg",  # not sharded
])
def test_a_job_reads_only_its_own_upload(two_images: LocalStorage, rel: str) -> None:
    with pytest.raises(UnsafePath, match=r"not the upload of|not allowed"):
        two_images.source_for(UID, rel)


def test_a_symlink_in_the_uploads_area_is_refused_even_inside_the_root(two_images: LocalStorage) -> None:
    st = two_images
    link = st.upload_path(UID, "a.jpg")
    link.unlink()
    os.symlink(st.original_path(OTHER, "b.jpg"), link)
    with pytest.raises(UnsafePath, match="symlink"):
        st.source_for(UID, st.relative(link))


def test_a_symlinked_shard_folder_is_refused(two_images: LocalStorage, tmp_path: Path) -> None:
    st = two_images
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / f"{UID}.jpg").write_bytes(b"planted")
    shard_dir = st.upload_path(UID, "a.jpg").parent
    for p in shard_dir.iterdir():
        p.unlink()
    shard_dir.rmdir()
    os.symlink(elsewhere, shard_dir)
    with pytest.raises(UnsafePath):
        st.source_for(UID, f"uploads/0b/6f/{UID}.jpg")


def test_the_own_original_is_read_once_the_upload_is_gone(two_images: LocalStorage) -> None:
    st = two_images
    assert st.source_for(UID, f"uploads/0b/6f/{UID}.jpg") == st.upload_path(UID, "a.jpg")
    st.upload_path(UID, "a.jpg").unlink()
    st.write_bytes(st.original_path(UID, "a.jpg"), b"mine, ingested")
    assert st.source_for(UID, f"uploads/0b/6f/{UID}.jpg") == st.original_path(UID, "a.jpg")


def test_a_symlinked_original_is_refused(two_images: LocalStorage) -> None:
    st = two_images
    st.upload_path(UID, "a.jpg").unlink()
    st.original_dir(UID).mkdir(parents=True)
    os.symlink(st.original_path(OTHER, "b.jpg"), st.original_path(UID, "a.jpg"))
    with pytest.raises(UnsafePath, match="symlink"):
        st.source_for(UID, f"uploads/0b/6f/{UID}.jpg")


def _dead_writers_temp(dest: Path, rand: str) -> Path:
    """The temp file name a writer on this host that has since exited would have left."""
    import socket
    import subprocess
    import sys

    dest.parent.mkdir(parents=True, exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    host = socket.gethostname().replace(".", "_")[:64]
    return dest.parent / f".{dest.name}.{host}-{dead.stdout.strip()}.{rand}.tmp"


def test_a_temp_file_of_a_writer_that_died_is_swept_one_alive_is_kept(tmp_path: Path) -> None:
    import socket

    st = LocalStorage(tmp_path)
    dest = st.preview_path(UID)
    orphan = _dead_writers_temp(dest, "abc123")
    host = socket.gethostname().replace(".", "_")[:64]
    mine = dest.parent / f".{dest.name}.{host}-{os.getpid()}.def456.tmp"
    elsewhere = dest.parent / f".{dest.name}.otherhost-1.ghi789.tmp"
    for p in (orphan, mine, elsewhere):
        p.write_bytes(b"half")
    st.write_bytes(dest, b"whole")  # a successful write sweeps its dead siblings
    assert not orphan.exists()
    assert mine.exists() and elsewhere.exists()
    assert dest.read_bytes() == b"whole"
    orphan.write_bytes(b"half")
    assert st.sweep(dest) == 1 and not orphan.exists()


def test_a_shard_folder_symlinked_inside_the_root_is_refused(two_images: LocalStorage) -> None:
    st = two_images
    shard_dir = st.upload_path(UID, "a.jpg").parent
    for p in shard_dir.iterdir():
        p.unlink()
    shard_dir.rmdir()
    target = st.original_dir(OTHER)  # another image's folder, inside the root
    (target / f"{UID}.jpg").write_bytes(b"planted")
    os.symlink(target, shard_dir)
    with pytest.raises(UnsafePath, match="symlinked folder"):
        st.source_for(UID, f"uploads/0b/6f/{UID}.jpg")


def test_write_once_sweeps_a_dead_writers_temp_file_too(tmp_path: Path) -> None:
    # Seen in the chaos test (seed 676813387): a worker killed while writing an image's
    # metadata left its temp file, and the next worker's write_once kept it for ever.
    st = LocalStorage(tmp_path)
    dest = st.metadata_path(UID)
    orphan = _dead_writers_temp(dest, "t894h_id")
    orphan.write_bytes(b'{"half')
    assert st.write_once(dest, b"{}") == b"{}"
    assert not orphan.exists()
    orphan.write_bytes(b'{"half')
    assert st.write_once(dest, b"other") == b"{}"  # already there: still swept
    assert not orphan.exists()
