"""Oracle tests of the numba drizzle kernels against the drizzle C package (3.0.0).

Tolerances (issue 3): where the C weight is >= 1% of its maximum, the science value agrees to
2e-5 relative (relative to ``max(|C|, median |C|)`` so that values crossing zero do not blow the
ratio up) and the weight to 2e-5 relative; the context image is identical everywhere. The inputs
land entirely inside the output, so none of the documented deviations (output edges, NaN pixmap,
lanczos normalisation, which is switched off here) applies. Flux conservation: the output total
``sum(sci * wht)`` equals the input total ``sum(data * weight)`` to 1e-6 relative for the square,
point and turbo kernels.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from hapdask.drizzle.tile import add_to_tile, finalize_tile

drizzle_resample = pytest.importorskip("drizzle.resample")
drizzle_utils = pytest.importorskip("drizzle.utils")

KERNELS = ["square", "point", "turbo", "gaussian", "lanczos2", "lanczos3"]
MARGIN = 12  # output pixels between the input footprint and the output edge


def random_case(seed: int, ny: int = 28, nx: int = 36):
    """Random smooth distortion + rotation + scale (0.5..2 output px per input px), pixfrac."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    scale = rng.uniform(0.5, 2.0)
    y, x = np.indices((ny, nx), dtype=np.float64)
    c, s = np.cos(theta), np.sin(theta)
    amp = rng.uniform(0.0, 0.6, 4)
    ph = rng.uniform(0, 2 * np.pi, 4)
    xs = scale * (c * x - s * y) + amp[0] * np.sin(x / 6.0 + ph[0]) + amp[1] * np.sin(y / 9 + ph[1])
    ys = scale * (s * x + c * y) + amp[2] * np.cos(y / 7.0 + ph[2]) + amp[3] * np.sin(x / 8 + ph[3])
    if rng.random() < 0.3:  # a parity flip (e.g. a mirrored detector)
        xs = -xs
    reach = MARGIN + 4 / min(scale, 1.0)
    xs += reach - xs.min() + rng.random()
    ys += reach - ys.min() + rng.random()
    out_shape = (int(ys.max() + reach) + 1, int(xs.max() + reach) + 1)
    pixmap = np.dstack([xs, ys])
    data = rng.normal(10.0, 3.0, (ny, nx)).astype(np.float32)
    weight = rng.uniform(0.2, 2.0, (ny, nx)).astype(np.float32)
    weight[rng.random((ny, nx)) < 0.05] = 0.0
    pixfrac = float(rng.uniform(0.5, 1.0))
    return pixmap, data, weight, out_shape, pixfrac, 1.0 / scale


def run_c(kernel, data, weight, pixmap, out_shape, pixfrac, pscale, iscale=1.0):
    d = drizzle_resample.Drizzle(kernel=kernel, out_shape=out_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d.add_image(
            data,
            exptime=1.0,
            pixmap=pixmap,
            weight_map=weight,
            pixfrac=pixfrac,
            pixel_scale_ratio=pscale,
            iscale=iscale,
        )
    return d.out_img, d.out_wht, d.out_ctx[0]


def run_ours(kernel, data, weight, pixmap, out_shape, pixfrac, pscale, iscale=1.0, ctx_id=0):
    num = np.zeros(out_shape)
    den = np.zeros(out_shape)
    ctx = np.zeros((ctx_id // 32 + 1,) + tuple(out_shape), np.int32)
    add_to_tile(
        data,
        weight,
        pixmap,
        num,
        den,
        ctx,
        origin=(0, 0),
        kernel=kernel,
        pixfrac=pixfrac,
        iscale=iscale,
        pixel_scale_ratio=pscale,
        ctx_id=ctx_id,
        lanczos_normalize=False,
    )
    sci, wht = finalize_tile(num, den)
    return sci, wht, ctx[ctx_id // 32], num, den


def lanczos_contributions(data, weight, pixmap, jj, ii, order, pscale):
    """Brute-force (d, dow) contributions of every input pixel to output pixel (jj, ii), in the
    C raster order, from the LUT definition in drizzle_kernels.md section 4."""
    from hapdask.drizzle._kernels import LANCZOS_LUT_STEP, lanczos_lut

    lut = lanczos_lut(order)
    x = pixmap[..., 0].ravel()
    y = pixmap[..., 1].ravel()
    pfo = order / pscale
    inside = (np.floor(x - pfo) + 1 <= ii) & (ii <= np.floor(x + pfo))
    inside &= (np.floor(y - pfo) + 1 <= jj) & (jj <= np.floor(y + pfo))
    kx = np.floor(np.abs(x - ii) * (pscale / LANCZOS_LUT_STEP) + 0.5).astype(int)
    ky = np.floor(np.abs(y - jj) * (pscale / LANCZOS_LUT_STEP) + 0.5).astype(int)
    inside &= (kx < lut.size) & (ky < lut.size)
    dow = lut[kx[inside]].astype(np.float64) * lut[ky[inside]] * weight.ravel()[inside]
    return data.ravel()[inside].astype(np.float64), dow


def assert_matches_c(ours, theirs):
    """Compare with C (tolerances in the module docstring)."""
    sci, wht, ctx = ours[:3]
    csci, cwht, cctx = theirs
    good = cwht >= 0.01 * cwht.max()
    assert good.sum() > 50
    ref = np.abs(csci[good]).astype(np.float64)
    denom = np.maximum(ref, np.median(ref))
    rel = np.abs(sci[good].astype(np.float64) - csci[good]) / denom
    assert rel.max() <= 2e-5, f"sci differs from C by {rel.max():.2e} relative"
    relw = np.abs(wht[good].astype(np.float64) - cwht[good]) / cwht[good]
    assert relw.max() <= 2e-5, f"wht differs from C by {relw.max():.2e} relative"
    assert np.array_equal(ctx, cctx), f"ctx differs at {np.count_nonzero(ctx != cctx)} pixels"
    # no weight where C has none, and the reverse
    assert np.array_equal(wht != 0, cwht != 0)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kernel_matches_c_random(kernel, seed):
    pixmap, data, weight, out_shape, pixfrac, pscale = random_case(seed)
    if kernel.startswith("lanczos") or kernel == "point":
        pixfrac = 1.0
    theirs = run_c(kernel, data, weight, pixmap, out_shape, pixfrac, pscale, iscale=1.7)
    ours = run_ours(kernel, data, weight, pixmap, out_shape, pixfrac, pscale, iscale=1.7)
    assert_matches_c(ours, theirs)


def aligned_case(kind: str, ny: int = 14, nx: int = 17):
    """Pixmaps whose square footprints lie exactly on output pixel lines (edges and corners
    touch cells without overlapping them): the C kernel's ``overlap > 0`` rule decides."""
    y, x = np.indices((ny, nx), dtype=np.float64)
    if kind == "shift":  # integer shift: each footprint is exactly one output pixel
        xs, ys = x + 5, y + 7
    elif kind == "half":  # half-pixel shift: each footprint covers 4 quarter pixels
        xs, ys = x + 5.5, y + 6.5
    elif kind == "double":  # 2x2 output pixels per input pixel, edges on cell lines
        xs, ys = 2 * x + 5.5, 2 * y + 6.5
    elif kind == "rot90":  # rotated by 90 degrees and mirrored
        xs, ys = y + 6, -x + nx + 6
    else:  # "diamond": 45 degrees, scale sqrt(2): corners on cell centres and lines
        xs, ys = x - y + ny + 6, x + y + 6
    pixmap = np.dstack([xs, ys])
    out_shape = (int(ys.max()) + 9, int(xs.max()) + 9)
    rng = np.random.default_rng(len(kind))
    data = rng.normal(10.0, 3.0, (ny, nx)).astype(np.float32)
    weight = rng.uniform(0.2, 2.0, (ny, nx)).astype(np.float32)
    return pixmap, data, weight, out_shape


@pytest.mark.parametrize("kind", ["shift", "half", "double", "rot90", "diamond"])
def test_square_touching_cells_match_c(kind):
    """Cells a footprint only touches get neither weight nor a context bit (as in C)."""
    pixmap, data, weight, out_shape = aligned_case(kind)
    theirs = run_c("square", data, weight, pixmap, out_shape, 1.0, 1.0)
    ours = run_ours("square", data, weight, pixmap, out_shape, 1.0, 1.0)
    assert_matches_c(ours, theirs)


@pytest.mark.parametrize("seed", range(20, 26))
def test_square_matches_c_more_shapes(seed):
    """pixfrac 1 and 0.3..1 over more random distortions, rotations, flips and scales (the
    footprints' edges span one to several output pixels)."""
    pixmap, data, weight, out_shape, pixfrac, pscale = random_case(seed, 22, 26)
    if seed % 2 == 0:
        pixfrac = 1.0
    else:
        pixfrac = 0.3 + 1.4 * (pixfrac - 0.5)
    theirs = run_c("square", data, weight, pixmap, out_shape, pixfrac, pscale)
    ours = run_ours("square", data, weight, pixmap, out_shape, pixfrac, pscale)
    assert_matches_c(ours, theirs)


@pytest.mark.parametrize("kernel", ["square", "point", "turbo"])
@pytest.mark.parametrize("seed", [4, 5])
def test_flux_conserved(kernel, seed):
    pixmap, data, weight, out_shape, pixfrac, pscale = random_case(seed, 40, 30)
    sci, wht, _, num, den = run_ours(kernel, data, weight, pixmap, out_shape, pixfrac, pscale)
    total_in = np.sum(data.astype(np.float64) * weight)
    total_out = np.sum(sci.astype(np.float64) * wht, where=wht != 0)
    assert abs(total_out - total_in) <= 1e-6 * np.sum(np.abs(data * weight))
    # every input pixel deposits exactly its weight
    assert den.sum() == pytest.approx(weight.sum(dtype=np.float64), rel=1e-12)


@pytest.mark.parametrize("ctx_id", [0, 31, 32, 70])
def test_context_bits_and_planes(ctx_id):
    pixmap, data, weight, out_shape, pixfrac, pscale = random_case(7)
    sci, wht, plane, _, _ = run_ours(
        "square", data, weight, pixmap, out_shape, pixfrac, pscale, ctx_id=ctx_id
    )
    bit = (plane.view(np.uint32) >> np.uint32(ctx_id % 32)) & 1
    assert np.array_equal(bit == 1, wht > 0)
    assert np.all(plane.view(np.uint32) & ~np.uint32(1 << (ctx_id % 32)) == 0)


def test_identity_pixmap_gives_exact_copy():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(20, 25)).astype(np.float32)
    y, x = np.indices(data.shape, dtype=np.float64)
    pixmap = np.dstack([x + 3, y + 2])
    for kernel in ("square", "point", "turbo"):
        sci, wht, ctx, _, _ = run_ours(kernel, data, None, pixmap, (25, 30), 1.0, 1.0)
        np.testing.assert_array_equal(sci[2:22, 3:28], data)
        np.testing.assert_array_equal(wht[2:22, 3:28], 1.0)
        assert wht.sum() == data.size


def _real_case(shared_data, crop=(slice(420, 540), slice(380, 520))):
    from astropy.io import fits
    from astropy.wcs import WCS

    sci = fits.getdata(shared_data / "real" / "j8bt06nyq_flt.fits", ("SCI", 1))
    with fits.open(shared_data / "headers" / "j8bt06nyq_sip_flt.fits") as hdul:
        hdr = hdul["SCI", 1].header.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs_full = WCS(hdr)
    wcs_full.pixel_shape = (sci.shape[1], sci.shape[0])
    assert wcs_full.sip is not None
    wcs_in = wcs_full[crop]
    data = np.ascontiguousarray(sci[crop], dtype=np.float32)
    wcs_in.pixel_shape = (data.shape[1], data.shape[0])
    # north-up 0.025"/pix TAN grid covering the crop with a margin
    foot = wcs_in.calc_footprint()
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.crval = foot.mean(axis=0)
    out.wcs.cdelt = [-0.025 / 3600, 0.025 / 3600]
    out.wcs.crpix = [1, 1]
    xo, yo = out.world_to_pixel_values(foot[:, 0], foot[:, 1])
    out.wcs.crpix = [1 - np.floor(xo.min()) + MARGIN, 1 - np.floor(yo.min()) + MARGIN]
    out_shape = (
        int(np.ceil(yo.max() - yo.min())) + 2 * MARGIN + 1,
        int(np.ceil(xo.max() - xo.min())) + 2 * MARGIN + 1,
    )
    out.pixel_shape = (out_shape[1], out_shape[0])
    pixmap = drizzle_utils.calc_pixmap(wcs_in, out)
    # input pixel ~0.028"x0.025" (HRC), output 0.025"
    pscale = 0.025 / np.sqrt(abs(np.linalg.det(wcs_in.pixel_scale_matrix)) * 3600**2)
    weight = np.ones_like(data)
    return data, weight, pixmap, out_shape, float(pscale)


@pytest.mark.parametrize("kernel", ["square", "point", "turbo", "gaussian", "lanczos3"])
def test_kernel_matches_c_real_exposure(shared_data, kernel):
    data, weight, pixmap, out_shape, pscale = _real_case(shared_data)
    pixfrac = 1.0 if kernel in ("point", "lanczos3") else 0.8
    theirs = run_c(kernel, data, weight, pixmap, out_shape, pixfrac, pscale)
    ours = run_ours(kernel, data, weight, pixmap, out_shape, pixfrac, pscale)
    assert_matches_c(ours, theirs)
    if kernel in ("square", "point", "turbo"):
        sci, wht = ours[:2]
        total_in = np.sum(data.astype(np.float64) * weight)
        total_out = np.sum(sci.astype(np.float64) * wht, where=wht != 0)
        assert abs(total_out / total_in - 1) <= 1e-6


def test_kernels_release_gil_and_are_thread_safe():
    """Run many drizzles at once in threads; each must equal its serial result (photutils style)."""
    cases = [random_case(seed) for seed in range(10, 18)]
    kernels = ["square", "turbo", "gaussian", "lanczos3", "point", "square", "square", "turbo"]

    def work(k):
        pixmap, data, weight, out_shape, pixfrac, pscale = cases[k]
        return run_ours(kernels[k], data, weight, pixmap, out_shape, pixfrac, pscale)[3:]

    serial = [work(k) for k in range(len(cases))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(work, range(len(cases))))
    for (n1, d1), (n2, d2) in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(n1, n2)
        np.testing.assert_array_equal(d1, d2)


def test_kernels_are_nogil():
    from hapdask.drizzle import _kernels

    for name in (
        "drizzle_square",
        "drizzle_point",
        "drizzle_turbo",
        "drizzle_gaussian",
        "drizzle_lanczos",
        "footprint_bbox",
        "merge_running_mean",
    ):
        fn = getattr(_kernels, name)
        assert fn.targetoptions.get("nogil") is True, name


@pytest.mark.parametrize("order", [2, 3])
def test_lanczos_equals_brute_force_mean(order):
    """Unnormalised lanczos (C weights) equals the exact float64 weighted mean of its
    contributions, computed independently pixel by pixel."""
    pixmap, data, weight, out_shape, _, pscale = random_case(21)
    sci, wht, _, num, den = run_ours(
        f"lanczos{order}", data, weight, pixmap, out_shape, 1.0, pscale
    )
    pscale32 = float(np.float32(pscale))
    rng = np.random.default_rng(0)
    jj, ii = np.nonzero(wht > 0.05 * wht.max())
    for k in rng.choice(jj.size, 15, replace=False):
        d, dow = lanczos_contributions(data, weight, pixmap, jj[k], ii[k], order, pscale32)
        assert den[jj[k], ii[k]] == pytest.approx(dow.sum(), rel=1e-12, abs=1e-12)
        assert num[jj[k], ii[k]] == pytest.approx(np.sum(d * dow), rel=1e-9, abs=1e-9)


def test_python_thread_runs_while_kernel_works(assert_releases_gil):
    """While a kernel runs, another Python thread keeps running (the GIL is released)."""
    ny, nx = 700, 900
    y, x = np.indices((ny, nx), dtype=np.float64)
    pixmap = np.dstack([0.9 * x + 0.3 * y + 5, -0.3 * x + 0.9 * y + 280])
    data = np.ones((ny, nx), np.float32)
    shape = (int(pixmap[..., 1].max()) + 5, int(pixmap[..., 0].max()) + 5)
    num = np.zeros(shape)
    den = np.zeros(shape)
    add_to_tile(data[:4, :4], None, pixmap[:4, :4], num, den, None, origin=(0, 0))  # compile
    assert_releases_gil(lambda: add_to_tile(data, None, pixmap, num, den, None, origin=(0, 0)))


def adversarial_case(kind: str, ny: int = 16, nx: int = 19):
    """Square-kernel footprints built to stress the ``overlap > 0`` decision against C.

    * ``shear``: a shear with rational coefficients, so the parallelogram vertices fall on
      quarter pixels, many of them exactly on output pixel lines;
    * ``sliver+``/``sliver-``: an almost exact shift whose footprints stick out of (or fall
      short of) an output pixel line by 1e-9, so edges are nearly but
      not exactly axis-parallel (1e-12 rad tilt), and the cells beyond the footprint get
      overlaps of ~1e-9;
    * ``sliver13``: the same with 1e-13 (overlaps ~1e-13);
    * ``big``: footprints of about 5x5 output pixels at 40 degrees (boxes of 8-9 cells: the
      scratch buffers of the kernel must grow).
    """
    y, x = np.indices((ny, nx), dtype=np.float64)
    if kind == "shear":
        xs, ys = x + 0.5 * y + 5, 0.75 * y + 0.25 * x + 7
    elif kind.startswith("sliver"):
        eps = {"sliver+": 1e-9, "sliver-": -1e-9, "sliver13": 1e-13}[kind]
        t = 1e-12
        xs = x - t * y + 6 + eps
        ys = y + t * x + 7 - eps
    else:  # "big"
        c, s = np.cos(np.radians(40.0)), np.sin(np.radians(40.0))
        xs = 5.0 * (c * x - s * y) + 5.0 * ny + 9
        ys = 5.0 * (s * x + c * y) + 9
    pixmap = np.dstack([xs, ys])
    out_shape = (int(ys.max()) + 12, int(xs.max()) + 12)
    rng = np.random.default_rng(len(kind))
    data = rng.normal(10.0, 3.0, (ny, nx)).astype(np.float32)
    weight = rng.uniform(0.2, 2.0, (ny, nx)).astype(np.float32)
    return pixmap, data, weight, out_shape


def assert_square_matches_c(pixmap, data, weight, out_shape, pixfrac):
    """Square kernel in tile mode and through the Drizzle API (the running-mean path) against
    drizzle C on the same inputs: module tolerances, context bits exact."""
    from hapdask.drizzle import Drizzle

    theirs = run_c("square", data, weight, pixmap, out_shape, pixfrac, 1.0)
    ours = run_ours("square", data, weight, pixmap, out_shape, pixfrac, 1.0)
    assert_matches_c(ours, theirs)
    api = Drizzle(kernel="square", out_shape=out_shape)
    api.add_image(data, exptime=1.0, pixmap=pixmap, weight_map=weight, pixfrac=pixfrac)
    assert_matches_c((api.out_img, api.out_wht, api.out_ctx[0]), theirs)


@pytest.mark.parametrize("pixfrac", [1.0, 0.5])
@pytest.mark.parametrize("kind", ["shear", "sliver+", "sliver-", "sliver13", "big"])
def test_square_adversarial_ctx_matches_c(kind, pixfrac):
    """Tile mode and the Drizzle API set exactly C's context bits (and weights where C has
    weight) on footprints with vertices on, or within 1e-9..1e-13 of, output pixel lines."""
    pixmap, data, weight, out_shape = adversarial_case(kind)
    assert_square_matches_c(pixmap, data, weight, out_shape, pixfrac)


def box_shape_case(ex: float, ey: float, pixfrac: float, ny: int = 18, nx: int = 21):
    """Affine pixmap whose pixfrac-shrunk footprints span ``ex`` x ``ey`` output pixels.

    ``x = a i + b j``, ``y = c i + d j`` with small shears (``b = 0.13 a``, ``c = -0.11 d``) so
    the edges are oblique, and incommensurate steps so the footprints fall at every sub-pixel
    phase. Returns the case and, from the affine map itself (exact corners), the histogram
    ``{(ncol, nrow): count}`` of the cell boxes the footprints' bounding boxes span.
    """
    a = ex / (pixfrac * 1.13)
    d = ey / (pixfrac * 1.11)
    b, c = 0.13 * a, -0.11 * d
    y, x = np.indices((ny, nx), dtype=np.float64)
    xs = a * x + b * y
    ys = c * x + d * y
    xs += MARGIN - xs.min() + 0.3183
    ys += MARGIN - ys.min() + 0.2718
    pixmap = np.dstack([xs, ys])
    out_shape = (int(ys.max()) + MARGIN + 2, int(xs.max()) + MARGIN + 2)
    h = 0.5 * pixfrac
    # footprint extents (corners i -+ h, j -+ h of the affine map)
    hx = h * (abs(a) + abs(b))
    hy = h * (abs(c) + abs(d))
    ncol = np.floor(xs + hx + 0.5) - np.floor(xs - hx + 0.5) + 1
    nrow = np.floor(ys + hy + 0.5) - np.floor(ys - hy + 0.5) + 1
    shapes, counts = np.unique(np.stack([ncol.ravel(), nrow.ravel()]), axis=1, return_counts=True)
    hist = {(int(cc), int(rr)): int(k) for (cc, rr), k in zip(shapes.T, counts, strict=True)}
    rng = np.random.default_rng(int(100 * ex + 10 * ey))
    data = rng.normal(10.0, 3.0, (ny, nx)).astype(np.float32)
    weight = rng.uniform(0.2, 2.0, (ny, nx)).astype(np.float32)
    return pixmap, data, weight, out_shape, hist


# (ex, ey) footprint sizes in output pixels: 0.45 spans 1-2 cells, 1.45 spans 2-3 cells, so the
# four small cases give every box from 1x1 to 3x3; 4.4 gives boxes of 5-6 cells a side
BOX_SIZES = [(0.45, 0.45), (0.45, 1.45), (1.45, 0.45), (1.45, 1.45), (4.4, 4.4)]


def test_box_shape_cases_cover_every_shape():
    """The cases of test_square_every_box_shape_matches_c really produce every footprint box
    from 1x1 to 3x3 output pixels, and boxes larger than 3x3."""
    seen = {}
    for ex, ey in BOX_SIZES:
        for pixfrac in (1.0, 0.7):
            for shape, k in box_shape_case(ex, ey, pixfrac)[4].items():
                seen[shape] = seen.get(shape, 0) + k
    for ncol in (1, 2, 3):
        for nrow in (1, 2, 3):
            assert seen.get((ncol, nrow), 0) >= 5, f"box {ncol}x{nrow} not exercised"
    assert sum(k for (cc, rr), k in seen.items() if min(cc, rr) > 3) >= 100


@pytest.mark.parametrize("pixfrac", [1.0, 0.7])
@pytest.mark.parametrize(("ex", "ey"), BOX_SIZES)
def test_square_every_box_shape_matches_c(ex, ey, pixfrac):
    """Footprint boxes of every shape from 1x1 to 3x3 output pixels, and larger ones, give C's
    weights and science values (module tolerances) and exactly C's context bits, in tile mode
    and through the Drizzle API (the running-mean path)."""
    pixmap, data, weight, out_shape, _ = box_shape_case(ex, ey, pixfrac)
    assert_square_matches_c(pixmap, data, weight, out_shape, pixfrac)


def _exact_cell_area(quad, x0, y0):
    """Exact (rational) area of the convex polygon ``quad`` inside the cell ``[x0, x0 + 1] x
    [y0, y0 + 1]`` (Sutherland-Hodgman clipping in Fractions)."""
    from fractions import Fraction

    poly = [(Fraction(x), Fraction(y)) for x, y in quad]
    for axis, bound, keep_below in (
        (0, Fraction(x0), False),
        (0, Fraction(x0) + 1, True),
        (1, Fraction(y0), False),
        (1, Fraction(y0) + 1, True),
    ):
        out = []
        for k, p in enumerate(poly):
            q = poly[(k + 1) % len(poly)]
            pin = p[axis] <= bound if keep_below else p[axis] >= bound
            qin = q[axis] <= bound if keep_below else q[axis] >= bound
            if pin:
                out.append(p)
            if pin != qin:
                t = (bound - p[axis]) / (q[axis] - p[axis])
                out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
        poly = out
        if not poly:
            return Fraction(0)
    area = sum(
        poly[k][0] * poly[(k + 1) % len(poly)][1] - poly[(k + 1) % len(poly)][0] * poly[k][1]
        for k in range(len(poly))
    )
    return abs(area) / 2


def _small_box_quads(rng, n):
    """Convex quads (corner order of the square kernel) spanning boxes of 1x1 to 3x3 cells:
    random rotated/sheared/tapered ones, ones with vertices on quarter pixels (edges and corners
    exactly on cell lines) and 1e-13..1e-9 slivers across a cell line."""
    quads = []
    for k in range(n):
        kind = k % 3
        if kind == 0:
            sx, sy = rng.uniform(0.3, 1.6, 2)
            th = rng.uniform(0, 2 * np.pi)
            c, s = np.cos(th), np.sin(th)
            base = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
            base *= [sx, sy]
            base[2] *= rng.uniform(0.85, 1.0)  # taper: a general convex quad
            pts = base @ np.array([[c, s], [-s, c]])
            pts += rng.uniform(0, 50, 2)
            if rng.random() < 0.5:  # mirrored: the other orientation
                pts = pts[:, ::-1].copy()
        elif kind == 1:
            q = rng.integers(0, 9, (2,)) / 4.0 + 20.0
            a, b, d = rng.integers(1, 6, 3) / 4.0
            pts = np.array([[0, 0], [a, b / 2], [a - b / 4, d + b / 2], [-b / 4, d]]) + q
        else:
            eps = 10.0 ** -rng.integers(9, 14)
            tilt = 1e-12 * rng.choice([-1, 1])
            x0, y0 = 30.5 + rng.choice([-eps, eps]), 40.5 + rng.choice([-eps, eps])
            w = rng.choice([0.5, 1.0, 1.5])
            pts = np.array([[x0, y0], [x0 + w, y0 + tilt], [x0 + w - tilt, y0 + w], [x0, y0 + w]])
        quads.append(pts)
    return quads


def test_square_small_box_overlaps_are_exact():
    """The vectorised overlaps of the square kernel's small-box path (boxes up to 3x3 cells)
    equal the exact rational overlap of each quad with each cell to 1e-12 (relative to the quad
    area), and are exactly 0 precisely where the exact overlap is 0 (C's ``overlap > 0`` rule,
    which decides the context bits); boxes larger than 3x3 or NaN corners are left to the
    general path."""
    from hapdask.drizzle import _kernels as K

    S = K.STRIP
    rng = np.random.default_rng(5)
    quads = _small_box_quads(rng, S - 2)
    buf = np.full(23 * S, -1.0)
    for i, pts in enumerate(quads):
        for k in range(4):
            buf[k * S + i] = pts[k, 0]
            buf[(4 + k) * S + i] = pts[k, 1]
    n = len(quads) + 2
    big = np.array([[0.0, 0.0], [3.2, 0.0], [3.2, 3.2], [0.0, 3.2]]) + 7.1
    nan = big.copy()
    nan[1, 1] = np.nan
    for i, pts in ((n - 2, big), (n - 1, nan)):
        for k in range(4):
            buf[k * S + i] = pts[k, 0]
            buf[(4 + k) * S + i] = pts[k, 1]
    K._square_row_small(buf, n)
    plane = buf.reshape(23, S)
    assert plane[13, n - 2] == 0.0 and plane[13, n - 1] == 0.0
    nzero = npos = 0
    for i, pts in enumerate(quads):
        c0 = np.floor(pts[:, 0].min() + 0.5)
        r0 = np.floor(pts[:, 1].min() + 0.5)
        assert (plane[8, i], plane[9, i]) == (c0, r0)
        assert plane[13, i] == 1.0
        xs, ys = pts[:, 0], pts[:, 1]
        area = 0.5 * abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))
        sign = -np.sign(plane[12, i])
        for c in range(3):
            for r in range(3):
                exact = _exact_cell_area(pts, c0 - 0.5 + c, r0 - 0.5 + r)
                got = plane[14 + 3 * c + r, i] * sign
                if exact == 0:
                    assert got == 0.0, (i, c, r, got)
                    nzero += 1
                else:
                    assert got > 0.0, (i, c, r, float(exact), got)
                    assert abs(got - float(exact)) <= 1e-12 * area, (i, c, r, float(exact), got)
                    npos += 1
    assert nzero > 100 and npos > 100


def test_square_weighted_runs_inside_strips_match_c():
    """The square kernel computes corners and overlaps only over each strip row's run from the
    first to the last weighted pixel (a tile's input box around a rotated footprint piece is
    mostly weight 0): runs that start and end inside 128-column strips, rows without any
    weighted pixel in a strip, holes inside a run and a run touching the array edge all give
    drizzle C's SCI, WHT and context bits, in tile mode and through the Drizzle API."""
    ny, nx = 40, 300  # three strips of columns
    jj, ii = np.mgrid[0:ny, 0:nx].astype(np.float64)
    t = np.deg2rad(23.0)
    pixmap = np.dstack([0.9 * (np.cos(t) * ii - np.sin(t) * jj) + 60.0,
                        0.9 * (np.sin(t) * ii + np.cos(t) * jj) + 5.0])
    rng = np.random.default_rng(7)
    data = rng.normal(10.0, 2.0, (ny, nx)).astype(np.float32)
    weight = np.zeros((ny, nx), np.float32)
    for j in range(ny):
        lo = 17 + 5 * j  # slanted band: each row's run starts and ends at a different column
        weight[j, lo:lo + 61 + (j % 7)] = 1.0 + 0.1 * (j % 3)
    weight[:, 250:] = 0.0
    weight[5, 40:45] = 0.0     # a hole inside a run
    weight[12:14, :] = 0.0     # rows with no weighted pixel at all
    weight[30:33, 0:3] = 2.0   # a run at the array's first column
    out_shape = (300, 300)
    assert_square_matches_c(pixmap, data, weight, out_shape, 1.0)
    assert_square_matches_c(pixmap, data, weight, out_shape, 0.7)


def test_square_sparse_rows_match_c():
    """Strip rows whose weighted pixels are under a quarter of their run are computed for those
    pixels only (gathered corners): drizzle C's SCI, WHT and context bits, in tile mode and
    through the Drizzle API, with isolated weighted pixels, pairs and pixels at the array's
    first and last columns."""
    ny, nx = 30, 260
    jj, ii = np.mgrid[0:ny, 0:nx].astype(np.float64)
    t = np.deg2rad(-31.0)
    pixmap = np.dstack([1.1 * (np.cos(t) * ii - np.sin(t) * jj) + 40.0,
                        1.1 * (np.sin(t) * ii + np.cos(t) * jj) + 160.0])
    rng = np.random.default_rng(5)
    data = rng.normal(10.0, 2.0, (ny, nx)).astype(np.float32)
    weight = np.where(rng.random((ny, nx)) < 0.08, 1.0, 0.0).astype(np.float32)
    weight[4, 100:102] = 1.5
    weight[[7, 8, 20], 0] = 2.0
    weight[[9, 21], nx - 1] = 2.0
    out_shape = (int(pixmap[..., 1].max()) + 4, int(pixmap[..., 0].max()) + 4)
    assert_square_matches_c(pixmap, data, weight, out_shape, 1.0)
    assert_square_matches_c(pixmap, data, weight, out_shape, 0.6)


def test_point_strips_match_c():
    """Drizzle's point kernel scans column strips where an input row crosses many output rows
    (``_point_width``): drizzle C's SCI, WHT and context bits, and rows scanned whole for a map
    that keeps input rows along output rows."""
    from hapdask.drizzle import Drizzle
    from hapdask.drizzle._kernels import POINT_STRIP
    from hapdask.drizzle.resample import _point_width

    ny, nx = 24, 3000
    jj, ii = np.mgrid[0:ny, 0:nx].astype(np.float64)
    rng = np.random.default_rng(9)
    data = rng.normal(10.0, 2.0, (ny, nx)).astype(np.float32)
    weight = rng.uniform(0.5, 1.5, (ny, nx)).astype(np.float32)
    for deg, width in ((72.0, POINT_STRIP), (8.0, 0)):
        t = np.deg2rad(deg)
        xs = 0.99 * (np.cos(t) * ii - np.sin(t) * jj)
        ys = 0.99 * (np.sin(t) * ii + np.cos(t) * jj)
        pixmap = np.dstack([xs - xs.min() + 3.2, ys - ys.min() + 2.7])
        assert _point_width(pixmap, (0, ny, 0, nx)) == width
        out_shape = (int(pixmap[..., 1].max()) + 4, int(pixmap[..., 0].max()) + 4)
        theirs = run_c("point", data, weight, pixmap, out_shape, 1.0, 1.0)
        api = Drizzle(kernel="point", out_shape=out_shape)
        api.add_image(data, exptime=1.0, pixmap=pixmap, weight_map=weight)
        assert_matches_c((api.out_img, api.out_wht, api.out_ctx[0]), theirs)


@pytest.mark.parametrize("pixfrac", [1.0, 0.8])
def test_square_corner_row_reuse_is_exact(pixfrac):
    """With pixfrac 1 a strip row takes its lower interpolated pixmap row from the previous
    row's upper one instead of interpolating it again: the corners equal those computed from
    scratch bit for bit on every row (first, interior, last), and rows are shared only then."""
    from hapdask.drizzle import _kernels as K

    ny, nx = 6, 20
    rng = np.random.default_rng(11)
    pixmap = np.dstack([np.indices((ny, nx))[1] * 0.9 + rng.normal(0, 0.05, (ny, nx)),
                        np.indices((ny, nx))[0] * 1.1 + rng.normal(0, 0.05, (ny, nx))])
    h = 0.5 * pixfrac
    s0, s1 = 3, 15
    for j in range(ny):
        shared = K._shares_row(j, h, ny)
        assert shared == (pixfrac == 1.0 and j >= 1)
        fresh = np.empty(23 * K.STRIP)
        lo, hi = np.zeros((2, nx)), np.zeros((2, nx))
        K._row_corners(pixmap, j, h, s0, s1, lo, hi, fresh)
        if not shared:
            continue
        # the previous row's upper row, then this row with keep_lo
        lo2, hi2 = np.full((2, nx), np.nan), np.full((2, nx), np.nan)
        K._row_corners(pixmap, j - 1, h, s0, s1, lo2, hi2, np.empty(23 * K.STRIP))
        reused = np.empty(23 * K.STRIP)
        K._row_corners(pixmap, j, h, s0, s1, hi2, lo2, reused, True)
        n = s1 - s0
        planes = fresh.reshape(23, K.STRIP)[:8, :n]
        assert np.isfinite(planes).all()
        assert np.array_equal(reused.reshape(23, K.STRIP)[:8, :n], planes)


def test_prefetch_hint_compiles_for_2d_and_3d_arrays_and_changes_no_value():
    from numba import njit

    from hapdask.drizzle._kernels import _prefetch

    @njit
    def touched_sum(a, b):
        s = 0.0
        for j in range(a.shape[0]):
            for i in range(a.shape[1]):
                _prefetch(a, j, i)
                _prefetch(b, j, i)
                s += a[j, i, 0] + a[j, i, 1] + b[j, i]
        return s

    rng = np.random.default_rng(5)
    a = rng.normal(size=(7, 11, 2))
    b = rng.normal(size=(7, 11)).astype(np.float32)
    a0, b0 = a.copy(), b.copy()
    want = sum(float(a[j, i, 0]) + float(a[j, i, 1]) + float(b[j, i])
               for j in range(7) for i in range(11))
    assert touched_sum(a, b) == want
    assert np.array_equal(a, a0) and np.array_equal(b, b0)


def _lerp_py(a: float, b: float, t: float) -> float:
    return a + t * (b - a)


@pytest.mark.parametrize("pixfrac", [1.0, 0.7])
def test_row_corners_equal_the_bilinear_formula(pixfrac):
    """The vectorised corner interpolation gives, bit for bit, the documented bilinear corners
    computed in plain Python floats: the pixmap interpolated to rows ``j -+ h`` (clamped cells at
    the first and last rows), then to columns ``i -+ h`` (clamped at the first and last
    columns), on strips that start and end inside the array and at its edges."""
    from hapdask.drizzle import _kernels as K

    ny, nx = 5, 23
    rng = np.random.default_rng(21)
    pixmap = np.dstack([np.indices((ny, nx))[1] * 1.3 + rng.normal(0, 0.3, (ny, nx)),
                        np.indices((ny, nx))[0] * 0.7 + rng.normal(0, 0.3, (ny, nx))])
    h = 0.5 * pixfrac

    def at(line, k, side):
        # ``line`` at k - h (side -1) or k + h (side +1): from the cell's left or lower end with
        # fraction 1 - h, or its right or upper end with h; -h and 1 + h at the ends (clamped
        # cells, linear extrapolation)
        n = len(line)
        if side < 0:
            a, t = (k - 1, 1.0 - h) if k >= 1 else (0, -h)
        else:
            a, t = (k, h) if k <= n - 2 else (n - 2, 1.0 + h)
        return _lerp_py(float(line[a]), float(line[a + 1]), t)

    for j in range(ny):
        for s0, s1 in [(0, nx), (3, 17), (1, 2), (nx - 4, nx), (0, 1)]:
            buf = np.full(23 * K.STRIP, np.nan)
            lo, hi = np.zeros((2, nx)), np.zeros((2, nx))
            K._row_corners(pixmap, j, h, s0, s1, lo, hi, buf)
            for i in range(s0, s1):
                for c in range(2):
                    rows = [[at(pixmap[:, m, c], j, side) for m in range(nx)]
                            for side in (-1, 1)]
                    # corners (-h, -h), (+h, -h), (+h, +h), (-h, +h)
                    want = [at(rows[0], i, -1), at(rows[0], i, 1), at(rows[1], i, 1),
                            at(rows[1], i, -1)]
                    got = [buf[(4 * c + k) * K.STRIP + i - s0] for k in range(4)]
                    assert got == want, (j, s0, s1, i, c)


def test_max_steps_equal_brute_force_with_holes():
    """The box-wide 8-neighbour step maxima (vectorised, reduced once) equal a brute-force
    scan over every pair of 8-connected neighbours of the box grown by one pixel, NaN steps
    ignored, with NaN and inf positions in the map, for boxes at and away from the edges."""
    from hapdask.drizzle import _kernels as K

    rng = np.random.default_rng(8)
    for ny, nx in [(1, 1), (1, 5), (4, 1), (9, 13)]:
        pixmap = rng.normal(0, 3, (ny, nx, 2))
        pixmap[rng.random((ny, nx, 2)) < 0.15] = np.nan
        pixmap[rng.random((ny, nx, 2)) < 0.05] = np.inf
        boxes = [(0, ny, 0, nx), (1, ny - 1, 1, nx - 1), (ny // 2, ny, 0, nx // 2 + 1)]
        for j0, j1, i0, i1 in boxes:
            ja, jb, ia, ib = max(j0 - 1, 0), min(j1 + 1, ny), max(i0 - 1, 0), min(i1 + 1, nx)
            want = [0.0, 0.0]
            for j in range(ja, jb):
                for i in range(ia, ib):
                    for dj, di in ((0, 1), (1, -1), (1, 0), (1, 1)):
                        if not (ja <= j + dj < jb and ia <= i + di < ib):
                            continue
                        for c in range(2):
                            e = abs(float(pixmap[j + dj, i + di, c]) - float(pixmap[j, i, c]))
                            if e > want[c]:
                                want[c] = e
            assert K._max_steps(pixmap, j0, j1, i0, i1) == tuple(want)
