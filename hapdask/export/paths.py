"""Safe output paths: every product stays inside its output directory, temporary files are
created exclusively and renamed atomically.

The one mechanism every exporter uses:

* :func:`output_path` joins a product name to the output directory and refuses any name that
  is not a single plain component, or whose resolved location is not directly inside the
  resolved output directory (a ``..`` or a symbolic link placed in the directory);
* :func:`create_temporary` creates ``<final>.part`` with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a
  leftover ``.part`` (file *or* symbolic link) is removed first, never followed, so a link
  planted there cannot make the run write into its target;
* :func:`commit` renames the temporary file over the final name (``os.replace`` replaces a
  link at the final name itself, never its target);
* :func:`remove_temporary` deletes what a failed run left behind;
* :func:`check_no_links` refuses a directory product (a zarr store) with links inside.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["check_no_links", "commit", "create_temporary", "output_path", "remove_temporary",
           "temporary_name"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
    | getattr(os, "O_CLOEXEC", 0)


def temporary_name(final: str | os.PathLike) -> Path:
    """The temporary name a product is written under before its final rename."""
    final = Path(final)
    return final.with_name(final.name + ".part")


def output_path(outdir: str | os.PathLike, name: str) -> Path:
    """``outdir / name``, checked to stay inside ``outdir``.

    Parameters
    ----------
    outdir : path
        The output directory (must exist).
    name : str
        A product file or directory name: one path component.

    Returns
    -------
    Path
        ``Path(outdir) / name`` (not resolved: as the caller named the directory).

    Raises
    ------
    ValueError
        When ``name`` is not a single plain component (separators, ``..``, NUL, control
        characters) or an existing entry of that name is a symbolic link.
    """
    text = str(name)
    if (not text or text in (".", "..") or "/" in text or os.sep in text
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in text)):
        raise ValueError(f"{ascii(text)}: not a plain file name; refusing to write outside "
                         f"{outdir}")
    base = Path(outdir).resolve(strict=True)
    path = Path(outdir) / text
    if path.is_symlink():
        raise ValueError(f"{path}: is a symbolic link; refusing to write through it (remove it "
                         "or choose another output directory)")
    if (base / text).resolve().parent != base:
        raise ValueError(f"{path}: resolves outside {base}; refusing to write there")
    return path


def check_no_links(root: str | os.PathLike) -> None:
    """Refuse a directory tree (e.g. a zarr store being reopened) holding symbolic links.

    Writers inside the tree (zarr) create sub-directories and files by name; a link planted
    anywhere in it would send those writes elsewhere.

    Raises
    ------
    ValueError
        Naming the first link found.
    """
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                raise ValueError(f"{path}: symbolic link inside {root}; refusing to write "
                                 "through it (remove it or choose another output directory)")


def create_temporary(final: str | os.PathLike) -> int:
    """Create ``<final>.part`` exclusively and return a file descriptor open for writing.

    A leftover ``.part`` file or symbolic link from an earlier run is unlinked first (the link
    itself, never its target); the file is then created with ``O_EXCL | O_NOFOLLOW``, so if
    anything appears at that name in between the call fails instead of writing through it.

    Raises
    ------
    FileExistsError
        If something was created at the temporary name concurrently.
    """
    tmp = temporary_name(final)
    remove_temporary(final)
    return os.open(tmp, _FLAGS, 0o644)


def remove_temporary(final: str | os.PathLike) -> None:
    """Remove ``<final>.part`` if it exists (a link is removed, not followed)."""
    tmp = temporary_name(final)
    try:
        st = os.lstat(tmp)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{tmp}: a directory is in the way of a temporary file")
    os.unlink(tmp)


def commit(final: str | os.PathLike) -> Path:
    """Atomically rename ``<final>.part`` to ``final`` (replacing a file or link there)."""
    final = Path(final)
    os.replace(temporary_name(final), final)
    return final
