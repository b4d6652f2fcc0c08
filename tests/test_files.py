"""Atomic writes: a failure (disk full, read-only folder) is one line that says the previous
file is unchanged, and leaves no temporary file."""
import errno
import os

import pytest

from attnkit.errors import AttnkitError, WriteError
from attnkit.files import atomic_write, write_json
from attnkit.run_files import RunFiles


def test_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "best.pt"
    target.write_bytes(b"the good checkpoint")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match=r"best.pt: could not be written \(No space left on device\); the previous "
                                         r"best.pt is unchanged"):
        atomic_write(target, lambda f: f.write(b"half of a new one"))
    assert target.read_bytes() == b"the good checkpoint"
    assert RunFiles(tmp_path).leftovers() == []


def test_a_read_only_folder_is_one_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: a read-only folder is still writable")
        with pytest.raises(AttnkitError, match="no eval.json was written"):
            write_json(folder / "eval.json", {})
    finally:
        folder.chmod(0o700)
