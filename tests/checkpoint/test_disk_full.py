"""Saving onto a full disk: an OSError, the previous checkpoint intact, the process alive, no temp
file left; stale temp files of interrupted saves removed by the next save; the file mode from the umask.

The disk-full test mounts a 64 kB tmpfs when it may (running as root with mount permitted), and
otherwise injects ENOSPC into os.write; it says which in its report line (pytest -rA shows it).
"""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("h5py")

from checkpoint_cases import save_full  # noqa: E402
from minidiff.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from minidiff.models import MLP  # noqa: E402

KB = 1024


def small_model(d_hid=8, seed=0):
    return MLP(in_dim=2, d_hid=d_hid, num_timesteps=10, num_layers=2, seed=seed)


def mount_tmpfs(directory, size):
    """Mount a tmpfs of `size` bytes on `directory`; False if this machine does not let us."""
    if os.name != "posix" or os.geteuid() != 0:
        return False
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """(directory, mechanism): a 64 kB tmpfs, or tmp_path with os.write failing past 64 kB in total."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if mount_tmpfs(disk, 64 * KB):
        yield disk, "tmpfs"
        subprocess.run(["umount", str(disk)], check=True, timeout=30)
        return
    used = {"bytes": 0}
    real_write = os.write

    def write(fd, data):                 # every file written under `disk` counts against 64 kB
        if not os.readlink(f"/proc/self/fd/{fd}").startswith(str(disk)):
            return real_write(fd, data)
        if used["bytes"] + len(data) > 64 * KB:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        used["bytes"] += len(data)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    yield disk, "injected ENOSPC (os.write)"


def test_disk_full_is_an_oserror_and_keeps_the_previous_checkpoint(small_disk, record_property):
    disk, mechanism = small_disk
    record_property("disk_full_mechanism", mechanism)
    print(f"disk full via {mechanism}")
    path = disk / "ck.h5"
    small = small_model()
    save_checkpoint(path, small)
    size = path.stat().st_size
    big = small_model(d_hid=128, seed=1)                 # about 4x the free space
    for _ in range(3):                                   # again and again: nothing piles up
        with pytest.raises(OSError) as info:
            save_checkpoint(path, big)
        assert info.value.errno == errno.ENOSPC
        assert sorted(os.listdir(disk)) == ["ck.h5"] and path.stat().st_size == size
        np.testing.assert_array_equal(load_checkpoint(path).model.flat()[0], small.flat()[0])
    smaller = small_model(seed=2)                        # the disk is usable again afterwards
    save_checkpoint(path, smaller)
    np.testing.assert_array_equal(load_checkpoint(path).model.flat()[0], smaller.flat()[0])


CHILD = """
import sys
from minidiff.checkpoint import save_checkpoint
from minidiff.models import MLP
try:
    save_checkpoint(sys.argv[1], MLP(in_dim=2, d_hid=128, num_timesteps=10, num_layers=2))
except OSError as e:
    print("OSError", e.errno)
"""


def test_disk_full_does_not_kill_the_process(tmp_path):
    """The issue's crash: h5py segfaulted in File.close on a full disk. Needs a real full disk."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not mount_tmpfs(disk, 32 * KB):
        pytest.skip("mounting a tmpfs is not permitted here (the ENOSPC injection covers the rest)")
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(disk / "ck.h5")], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.split() == ["OSError", str(errno.ENOSPC)]
        assert os.listdir(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True, timeout=30)


def test_stale_temp_files_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "ck.h5"
    stale = [tmp_path / ".ck.h5.x8k2_q1a.tmp", tmp_path / ".ck.h5.0f3a9c2e.tmp"]   # mkstemp's and ours
    keep = [tmp_path / ".other.h5.abcd1234.tmp", tmp_path / "ck.h5.tmp", tmp_path / ".ck.h5.tmp"]
    for p in stale + keep:
        p.write_bytes(b"\0" * 4096)
    save_full(path)
    assert sorted(os.listdir(tmp_path)) == sorted(["ck.h5"] + [p.name for p in keep])


def test_stale_temp_files_free_the_disk_for_the_save(small_disk):
    """Temp files of crashed saves filled the disk: the next save removes them first, then fits."""
    disk, _ = small_disk
    path = disk / "ck.h5"
    with open(disk / ".ck.h5.deadbeef.tmp", "wb") as fh:
        fh.write(b"\0" * (48 * KB))
    model = small_model()
    save_checkpoint(path, model)
    assert os.listdir(disk) == ["ck.h5"]
    np.testing.assert_array_equal(load_checkpoint(path).model.flat()[0], model.flat()[0])


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_file_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "ck.h5", small_model())
    finally:
        os.umask(old)
    assert (tmp_path / "ck.h5").stat().st_mode & 0o777 == 0o666 & ~umask


def test_any_write_error_is_an_oserror_with_nothing_lost(tmp_path, monkeypatch):
    """EIO from fsync, and a rename that fails, leave the old file and no temp file."""
    path = tmp_path / "ck.h5"
    old = small_model()
    save_checkpoint(path, old)
    for name in ("fsync", "replace"):
        def fail(*args, **kwargs):
            raise OSError(errno.EIO, "injected I/O error")
        with monkeypatch.context() as m:
            m.setattr(os, name, fail)
            with pytest.raises(OSError, match="injected"):
                save_checkpoint(path, small_model(seed=3))
        assert os.listdir(tmp_path) == ["ck.h5"]
        np.testing.assert_array_equal(load_checkpoint(path).model.flat()[0], old.flat()[0])
