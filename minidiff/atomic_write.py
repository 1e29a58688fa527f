"""Replace a file so that a crash, a kill or a full disk leaves either the old file or the new one.

    write_atomically(path, data): data -> `.<name>.<random>.tmp` beside path (plain os.write, mode
    from the umask), fsync, rename over path, fsync the directory. Any failure (ENOSPC, EIO ...)
    raises the OSError with path untouched and the temp file removed.
    remove_stale_temps(path): the temp files that interrupted writes (a kill -9 mid-write) left.
"""
import os
import re
import secrets


def _temp_pattern(name):
    """`.<name>.<random>.tmp`: our temp files, and tempfile.mkstemp's (minidiff up to c83fd3d)."""
    return re.compile(r"\." + re.escape(name) + r"\.[A-Za-z0-9_]+\.tmp")


def remove_stale_temps(path):
    """Remove the temp files `.<name>.*.tmp` that interrupted writes of `path` left; their names.
    One writer per path: a concurrent write of the same path would lose its temp file (and fail)."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    pattern, removed = _temp_pattern(name), []
    for entry in os.listdir(directory):
        if pattern.fullmatch(entry):
            try:
                os.remove(os.path.join(directory, entry))
                removed.append(entry)
            except FileNotFoundError:
                pass
    return removed


def _fsync_directory(directory):
    """Make the rename durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path, data):
    """Write the bytes `data` to a new temp file beside `path` (mode 0o666 & ~umask), fsync it and
    rename it over `path`. On any error the temp file is removed and the OSError raised."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)
