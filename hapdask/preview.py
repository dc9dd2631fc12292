"""JPEG previews of drizzle products: ``<product>_dr[cz].jpg``, ``<product>_dr[cz]_thumb.jpg`` and a
colour preview of a total product from up to three filter images.

DrizzlePac documents these files but never makes them (inventory section 6), so the rendering
is hapdask's own definition:

* the image is block-averaged (NaN-aware, :func:`astropy.nddata.block_reduce`) by the smallest
  integer factor that brings its longer side to at most ``max_size`` (1024) pixels; the thumbnail
  is block-averaged the same way to at most ``thumb_size`` (128) pixels;
* grey levels: from the sigma-clipped sky and noise of the pixels with data (WHT > 0, finite),
  ``lo = sky - 1 sigma`` and ``hi = max(99.95th percentile, sky + 20 sigma)``; the linear
  fraction ``(x - lo) / (hi - lo)`` is clipped to [0, 1] and stretched with
  :class:`astropy.visualization.AsinhStretch` (``asinh_a`` 0.1): the sky is dark grey (~40),
  3-sigma noise mid-grey, sources bright without saturating their cores. (A zscale display puts
  the sky at mid-grey, which hides faint structure in colour.) No-data pixels are black; north is
  up when the grid is north-up (FITS row 0 is the bottom row);
* colour: filters sorted by pivot wavelength (``PHOTPLAM``; otherwise the given order, blue
  first), reddest -> R, bluest -> B, the middle (or the mean of two) -> G; one filter gives grey.
  Each image is scaled to flux density (``x PHOTFLAM``); each channel gets its own ``lo`` (so the
  sky is neutral) and all share the largest span ``hi - lo`` (so source colours are kept).
  Name: ``<total stem>_<f1>-<f2>-<f3>_dr[cz].jpg`` (filters lower case, blue to red).
* JPEG quality ``quality`` (90), no metadata: the same input gives the same bytes.

Files are written through :mod:`hapdask.export.paths` (``<name>.part`` created exclusively,
renamed when complete); an existing file is left alone (FileExistsError) unless
``overwrite=True``.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.nddata import reshape_as_blocks
from astropy.stats import sigma_clipped_stats
from astropy.visualization import AsinhStretch
from PIL import Image

from hapdask._memory import drop_file_pages
from hapdask.catalogs.product import DrizzleProduct
from hapdask.export.paths import commit, create_temporary, output_path, remove_temporary

__all__ = ["PreviewParams", "display_limits", "grey_levels", "preview_planes", "render_preview",
           "render_color", "write_previews", "write_color_preview", "preview_names",
           "color_preview_name"]


@dataclass(frozen=True)
class PreviewParams:
    """Preview rendering parameters (see the module docstring)."""

    max_size: int = 1024
    thumb_size: int = 128
    asinh_a: float = 0.1
    quality: int = 90

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.thumb_size < 1:
            raise ValueError("PreviewParams.max_size/thumb_size: must be >= 1")
        if not 0 < self.asinh_a <= 1:
            raise ValueError(f"PreviewParams.asinh_a: must be in (0, 1], got {self.asinh_a}")
        if not 1 <= self.quality <= 95:
            raise ValueError(f"PreviewParams.quality: must be in 1..95, got {self.quality}")


def _binned(sci: np.ndarray, wht: np.ndarray, size: int) -> np.ndarray:
    """NaN-aware block average (NaN where no data) so the longer side is <= ``size``
    (:func:`_binned_many` of one size)."""
    return _binned_many(sci, wht, (size,))[0]


class _Binner:
    """Block averages of one factor, fed bands of rows in order (rows that do not fill a block
    yet wait for the next band): ``values`` with 0 where ``good`` is False.

    A block's mean is ``np.nanmean`` of its pixels with NaN where there is no data (what
    :func:`astropy.nddata.block_reduce` gives with ``func=np.nanmean``), computed as
    ``nanmean`` does it (the sum of the values with NaN replaced by 0, over the same block
    layout, divided by the count of the others) without making the NaN-filled band and
    ``nanmean``'s copy of it: the same float64 sums, bit for bit. The sums of the blocks are
    taken on views of the band (a block's sum depends only on its own values); only a last,
    partial column of blocks is padded with zeros (to the block layout ``block_reduce``
    sums), and the counts are added up as small integers.
    """

    def __init__(self, shape: tuple[int, int], factor: int) -> None:
        ny, nx = shape
        self.factor, self.nx = factor, nx
        self.ox = math.ceil(nx / factor)
        self.whole = nx // factor  # columns of blocks without padding
        self.out = np.empty((math.ceil(ny / factor), self.ox))
        self.row = 0  # next output row
        self.pending: tuple[np.ndarray, np.ndarray] | None = None
        # widest integer the counts of a block row's pixels need (per column, then per block)
        self._rows_t = np.uint8 if factor <= np.iinfo(np.uint8).max else np.int64

    def add(self, values: np.ndarray, good: np.ndarray, last: bool) -> None:
        f = self.factor
        if self.pending is not None:  # the rows held back complete a block row first
            held = self.pending[0].shape[0]
            take = min(f - held, values.shape[0])
            v = np.concatenate([self.pending[0], values[:take]])
            g = np.concatenate([self.pending[1], good[:take]])
            values, good = values[take:], good[take:]
            self.pending = None
            if v.shape[0] < f and not last:
                self.pending = (v, g)
                return
            self._blocks(v, g)
        n = values.shape[0] if last else values.shape[0] // f * f
        if n < values.shape[0]:
            self.pending = (values[n:].copy(), good[n:].copy())
        if n:
            self._blocks(values[:n], good[:n])

    def _blocks(self, values: np.ndarray, good: np.ndarray) -> None:
        """Means of the blocks of ``values`` (rows: a multiple of the factor, or the image's
        last rows), into the next rows of :attr:`out`."""
        f, whole, ox = self.factor, self.whole, self.ox
        n = values.shape[0]
        if n % f:  # the image's last, partial block row: padded with rows of no data
            pad = -(-n // f) * f
            values = np.concatenate([values, np.zeros((pad - n, values.shape[1]))])
            good = np.concatenate([good, np.zeros((pad - n, good.shape[1]), dtype=bool)])
            n = pad
        by = n // f
        total = np.empty((by, ox))
        axis = (2, 3)
        if whole:
            total[:, :whole] = np.sum(reshape_as_blocks(values[:, :whole * f], f), axis=axis)
        if whole < ox:  # the last column of blocks, padded with no data
            edge = np.zeros((n, f))
            edge[:, :self.nx - whole * f] = values[:, whole * f:]
            total[:, whole] = np.sum(reshape_as_blocks(edge, f), axis=axis)[:, 0]
        # pixels with data: per column of each block row, then per block
        cols = np.add.reduce(good.view(np.uint8).reshape(by, f, self.nx), axis=1,
                             dtype=self._rows_t)
        starts = np.arange(0, self.nx, f)
        count = np.add.reduceat(cols, starts, axis=1, dtype=np.intp)
        with np.errstate(invalid="ignore"):  # blocks without data: 0 / 0 = NaN = no data
            got = np.divide(total, count, out=total, casting="unsafe")
        self.out[self.row:self.row + by] = got
        self.row += by


def _binned_shape(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """Shape of :func:`_binned` of an array of ``shape`` at ``size``."""
    f = max(1, math.ceil(max(shape) / size))
    return math.ceil(shape[0] / f), math.ceil(shape[1] / f)


def _binned_many(sci: np.ndarray, wht: np.ndarray, sizes: tuple[int, ...]
                 ) -> list[np.ndarray]:
    """NaN-aware block averages (NaN where no data), one per size: the smallest integer factor
    that brings the longer side to <= ``size``.

    One pass through bands of rows (``sci``/``wht`` may be memory-mapped and are never copied
    whole); each block is averaged from the same float64 values as when the whole frame is
    averaged at once, so the results are the same.
    """
    ny, nx = sci.shape
    factors = [max(1, math.ceil(max(ny, nx) / size)) for size in sizes]
    binners = {f: _Binner((ny, nx), f) for f in factors if f > 1}
    if binners:
        step = max(512, *binners)
        for r0 in range(0, ny, step):
            r1 = min(ny, r0 + step)
            # the band in float64 (the blocks are summed in float64) converted once from the
            # file's (big-endian) floats, the test and the zeros on native values: 2x cheaper
            values = np.asarray(sci[r0:r1]).astype(np.float64)
            good = np.isfinite(values)
            good &= np.asarray(wht[r0:r1]) > 0
            np.copyto(values, 0.0, where=~good)
            drop_file_pages(sci)  # the mapped pages read so far (hapdask._memory)
            drop_file_pages(wht)
            for b in binners.values():
                b.add(values, good, last=r1 == ny)
    return [binners[f].out if f > 1 else
            np.where((wht > 0) & np.isfinite(sci), sci, np.nan).astype(np.float64)
            for f in factors]


def display_limits(data: np.ndarray) -> tuple[float, float]:
    """``(sky - sigma, max(99.95th percentile, sky + 20 sigma))`` of the finite pixels."""
    values = data[np.isfinite(data)]
    if values.size == 0:
        return 0.0, 1.0
    _, sky, sigma = sigma_clipped_stats(values, sigma=3.0, maxiters=5)
    lo = float(sky - sigma)
    hi = max(float(np.percentile(values, 99.95)), float(sky + 20.0 * sigma))
    return lo, (hi if hi > lo else lo + 1.0)


def grey_levels(data: np.ndarray, params: PreviewParams,
                limits: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 image (row 0 = top) of ``data`` (row 0 = bottom): asinh stretch, NaN -> 0."""
    good = np.isfinite(data)
    lo, hi = display_limits(data) if limits is None else limits
    span = hi - lo if hi > lo else 1.0
    scaled = np.clip((np.where(good, data, lo) - lo) / span, 0.0, 1.0)
    out = np.round(AsinhStretch(params.asinh_a)(scaled) * 255.0).astype(np.uint8)
    out[~good] = 0
    return np.flipud(out)


def preview_planes(product: DrizzleProduct, params: PreviewParams = PreviewParams()
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The block averages (float64, NaN where no data) of a product's preview and thumbnail
    (module docstring), from one pass through its SCI and WHT."""
    big, small = _binned_many(product.sci, product.wht, (params.max_size, params.thumb_size))
    return big, small


def render_preview(product: DrizzleProduct, params: PreviewParams = PreviewParams(),
                   planes: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(preview, thumbnail) uint8 grey images of a product (``planes``: its
    :func:`preview_planes` if already made)."""
    big, small = preview_planes(product, params) if planes is None else planes
    return grey_levels(big, params), grey_levels(small, params)


def _channels(products: list[DrizzleProduct]) -> list[DrizzleProduct]:
    if not 1 <= len(products) <= 3:
        raise ValueError(f"colour preview: 1 to 3 filter images, got {len(products)}")
    shape = products[0].sci.shape
    for p in products:
        if p.sci.shape != shape:
            raise ValueError(f"colour preview: {p.name} has shape {p.sci.shape}, "
                             f"{products[0].name} {shape}; filter images must share the grid")
    pivots = [p.keyword("PHOTPLAM") for p in products]
    if all(v is not None for v in pivots):
        return [p for _, p in sorted(zip(pivots, products, strict=True),
                                     key=lambda t: float(t[0]))]
    return list(products)


def render_color(products: list[DrizzleProduct], params: PreviewParams = PreviewParams(),
                 size: int | None = None, binned: Mapping[str, np.ndarray] | None = None
                 ) -> np.ndarray:
    """(ny, nx, 3) uint8 RGB preview of up to three filter images (module docstring).
    ``binned``: block averages of products (by :attr:`~DrizzleProduct.name`) already made at
    ``size`` (the preview's, :func:`preview_planes`), used instead of reading them again."""
    ordered = _channels(products)
    size = params.max_size if size is None else size
    binned = binned or {}
    planes = []
    for p in ordered:
        flam = p.keyword("PHOTFLAM")
        scale = float(flam) if flam is not None else 1.0
        plane = binned.get(p.name)
        if plane is None:
            plane = _binned(p.sci, p.wht, size)
        elif plane.shape != _binned_shape(p.sci.shape, size):
            raise ValueError(f"colour preview: the block averages given for {p.name} have "
                             f"shape {plane.shape}, not {_binned_shape(p.sci.shape, size)}")
        planes.append(plane * scale)
    limits = [display_limits(plane) for plane in planes]
    span = max(hi - lo for lo, hi in limits)
    grey = [grey_levels(plane, params, (lo, lo + span)) for plane, (lo, _) in
            zip(planes, limits, strict=True)]
    if len(grey) == 1:
        r = g = b = grey[0]
    elif len(grey) == 2:
        b, r = grey
        g = ((b.astype(np.uint16) + r) // 2).astype(np.uint8)
    else:
        b, g, r = grey
    return np.dstack([r, g, b])


def _jpeg_bytes(array: np.ndarray, params: PreviewParams) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=params.quality, optimize=False,
                                progressive=False, subsampling=0)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes, overwrite: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    final = output_path(path.parent, path.name)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final}: exists; pass overwrite=True to replace it")
    fd = create_temporary(final)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return commit(final)
    except BaseException:
        remove_temporary(final)
        raise


def _stem(product_name: str) -> tuple[str, str]:
    """``hst_x_drc.fits`` -> (``hst_x``, ``drc``); other names keep ``drz``."""
    name = os.path.basename(product_name)
    for kind in ("drz", "drc"):
        if name.endswith(f"_{kind}.fits"):
            return name[: -len(f"_{kind}.fits")], kind
    return (name[:-5] if name.endswith(".fits") else name), "drz"


def preview_names(product_name: str) -> tuple[str, str]:
    """(``<stem>_drc.jpg``, ``<stem>_drc_thumb.jpg``) for ``<stem>_drc.fits`` (likewise drz)."""
    stem, kind = _stem(product_name)
    return f"{stem}_{kind}.jpg", f"{stem}_{kind}_thumb.jpg"


def color_preview_name(total_name: str, filters: list[str]) -> str:
    """``<total stem>_<f1>-<f2>_dr[cz].jpg`` (filters in the given order, lower case)."""
    stem, kind = _stem(total_name)
    return f"{stem}_{'-'.join(f.lower() for f in filters)}_{kind}.jpg"


def write_previews(product: DrizzleProduct, outdir: str | os.PathLike[str], *,
                   params: PreviewParams = PreviewParams(),
                   overwrite: bool = False,
                   planes: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Path, Path]:
    """Write ``<product>_dr[cz].jpg`` and ``_thumb.jpg`` into ``outdir``; returns both paths
    (``planes``: the product's :func:`preview_planes` if already made)."""
    preview, thumb = render_preview(product, params, planes)
    big_name, thumb_name = preview_names(product.name)
    outdir = Path(outdir)
    for name in (big_name, thumb_name):
        if (outdir / name).exists() and not overwrite:
            raise FileExistsError(f"{outdir / name}: exists; pass overwrite=True to replace it")
    return (_write_bytes(outdir / big_name, _jpeg_bytes(preview, params), overwrite),
            _write_bytes(outdir / thumb_name, _jpeg_bytes(thumb, params), overwrite))


def write_color_preview(total: DrizzleProduct, products: list[DrizzleProduct],
                        outdir: str | os.PathLike[str], *, params: PreviewParams = PreviewParams(),
                        overwrite: bool = False,
                        binned: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write the colour preview of a total product from its filter images; returns the path
    (``binned``: as :func:`render_color`)."""
    ordered = _channels(products)
    filters = [str(p.keyword("FILTER", default=p.name)) for p in ordered]
    rgb = render_color(ordered, params, binned=binned)
    path = Path(outdir) / color_preview_name(total.name, filters)
    return _write_bytes(path, _jpeg_bytes(rgb, params), overwrite)
