"""Manifest (``skycell-pNNNNxXXyYY_manifest.txt``) and trailer logs (``<layer>_trl.txt``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["manifest_name", "write_manifest", "write_trailer", "write_atomic"]


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file under a temporary name and rename it (never a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def manifest_name(skycell: str) -> str:
    """``skycell-p1889x07y19_manifest.txt`` for ``p1889x07y19`` or ``skycell-p1889x07y19``."""
    name = skycell if skycell.startswith("skycell-") else f"skycell-{skycell}"
    return f"{name}_manifest.txt"


def write_manifest(outdir: str | os.PathLike, skycell: str,
                   products: Iterable[str | os.PathLike]) -> Path:
    """Write the manifest: one product file name per line (relative to ``outdir``), sorted."""
    outdir = Path(outdir)
    names = sorted({os.path.relpath(Path(p), outdir) for p in products})
    return write_atomic(outdir / manifest_name(skycell), "".join(n + "\n" for n in names))


def write_trailer(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """Write a trailer log (``<layer stem>_trl.txt``)."""
    return write_atomic(path, "".join(str(line).rstrip("\n") + "\n" for line in lines))
