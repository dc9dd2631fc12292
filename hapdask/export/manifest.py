"""Manifest (``skycell-pNNNNxXXyYY_manifest.txt``) and trailer logs (``<layer>_trl.txt``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from hapdask.export.paths import commit, create_temporary, output_path, remove_temporary

__all__ = ["manifest_name", "write_manifest", "write_trailer", "write_atomic"]


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file under a temporary name and rename it (never a partial file).

    The temporary file is created exclusively and the path checked to stay in its directory
    (:mod:`hapdask.export.paths`): links planted at either name are never followed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path = output_path(path.parent, path.name)
    try:
        with os.fdopen(create_temporary(path), "w", encoding="utf-8") as fh:
            fh.write(text)
        return commit(path)
    except BaseException:
        remove_temporary(path)
        raise


def manifest_name(skycell: str) -> str:
    """``skycell-p1889x07y19_manifest.txt`` for ``p1889x07y19`` or ``skycell-p1889x07y19``."""
    name = skycell if skycell.startswith("skycell-") else f"skycell-{skycell}"
    return f"{name}_manifest.txt"


def write_manifest(outdir: str | os.PathLike, skycell: str,
                   products: Iterable[str | os.PathLike]) -> Path:
    """Write the manifest: one product file name per line (relative to ``outdir``), sorted.

    The manifest describes the directory: products an earlier run listed that are still there
    (plain names, not links) stay listed beside the new ones, so a run that writes only some
    layers or formats never leaves earlier products unlisted.
    """
    outdir = Path(outdir)
    path = outdir / manifest_name(skycell)
    names = {os.path.relpath(Path(p), outdir) for p in products}
    try:
        old = path.read_text(encoding="utf-8").splitlines() if not path.is_symlink() else []
    except (OSError, UnicodeDecodeError):
        old = []
    for name in old:
        name = name.strip()
        if name and "/" not in name and name not in (".", "..") \
                and not (outdir / name).is_symlink() and (outdir / name).exists():
            names.add(name)
    return write_atomic(path, "".join(n + "\n" for n in sorted(names)))


def write_trailer(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """Write a trailer log (``<layer stem>_trl.txt``)."""
    return write_atomic(path, "".join(str(line).rstrip("\n") + "\n" for line in lines))
