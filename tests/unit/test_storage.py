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
    with pytest.raises(SourceMissing):
        st.source_for(UID, "uploads/0b/6f/missing.jpg")
    st.write_bytes(st.original_path(UID, "a.jpg"), b"data")
    assert st.source_for(UID, "uploads/0b/6f/missing.jpg") == st.original_path(UID, "a.jpg")
