"""hapdask.io._cache: per-process FITS handle and exposure caches behind Chip.read."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from astropy.io import fits

from hapdask import _memory
from hapdask.io import _cache, open_exposure


def _write(path, data, value_offset=0.0):
    prim = fits.Header({"INSTRUME": "WFC3", "DETECTOR": "UVIS", "FILTER": "F606W",
                        "EXPTIME": 10.0, "ROOTNAME": "icac01aaq"})
    sci = fits.ImageHDU((data + value_offset).astype(np.float32), name="SCI", ver=1)
    sci.header["BUNIT"] = "ELECTRONS"
    dq = fits.ImageHDU(np.zeros(data.shape, np.int16), name="DQ", ver=1)
    fits.HDUList([fits.PrimaryHDU(header=prim), sci, dq]).writeto(path, overwrite=True)
    return path


@pytest.fixture(autouse=True)
def _empty_caches():
    _cache.clear_caches()
    yield
    _cache.clear_caches()


def test_cache_region_reads_do_not_reopen(tmp_path, monkeypatch):
    data = np.arange(64 * 48, dtype=np.float32).reshape(64, 48)
    path = _write(tmp_path / "icac01aaq_flt.fits", data)
    opened = []
    original = _cache.open_fits

    def counting(p):
        opened.append(p)
        return original(p)

    monkeypatch.setattr(_cache, "open_fits", counting)
    chip = open_exposure(path).chips[0]
    for y0 in range(0, 64, 16):
        sci, err, dq = chip.read((y0, y0 + 16, 4, 20))
        np.testing.assert_array_equal(sci, data[y0:y0 + 16, 4:20])
    # narrow regions are read row by row, wide ones as whole rows: same pixels
    for box in [(3, 40, 5, 13), (0, 64, 0, 48), (63, 64, 47, 48)]:
        np.testing.assert_array_equal(chip.read(box)[0], data[box[0]:box[1], box[2]:box[3]])
    assert open_exposure(path).chips[0].read((0, 2, 0, 2))[0].tolist() == [[0, 1], [48, 49]]
    assert len(opened) == 1  # open_exposure, every read and the second open: one file open


def test_cache_file_replaced_on_disk(tmp_path):
    data = np.zeros((32, 32), np.float32)
    path = _write(tmp_path / "icac01aaq_flt.fits", data)
    chip = open_exposure(path).chips[0]
    assert chip.read((0, 4, 0, 4))[0].max() == 0
    old = next(iter(_cache._HANDLES.values()))
    # replace the file by a new one (new inode, new mtime) and rewrite it in place
    tmp = _write(tmp_path / "new.fits", data, 5.0)
    os.replace(tmp, path)
    assert chip.read((0, 4, 0, 4))[0].min() == 5.0
    assert old.closed  # the stale handle was closed
    with fits.open(path, mode="update") as h:
        h["SCI"].data[:] = 7.0
    assert open_exposure(path).chips[0].read((0, 4, 0, 4))[0].min() == 7.0
    assert len(_cache._HANDLES) == 1


def test_cache_bounded_lru_closes_evicted(tmp_path, monkeypatch):
    monkeypatch.setattr(_cache, "FITS_CACHE_SIZE", 3)
    chips = [open_exposure(_write(tmp_path / f"icac0{i}aaq_flt.fits",
                                  np.full((8, 8), i, np.float32))).chips[0] for i in range(5)]
    handles = []
    for i, chip in enumerate(chips):
        assert chip.read((0, 1, 0, 1))[0][0, 0] == i
        handles.append(_cache._HANDLES[_cache.file_identity(chip.path)])
    assert len(_cache._HANDLES) == 3
    assert [h.closed for h in handles] == [True, True, False, False, False]
    assert chips[0].read((0, 1, 0, 1))[0][0, 0] == 0  # reopened after eviction
    assert handles[2].closed


def test_cache_eviction_waits_for_readers(tmp_path):
    path = str(_write(tmp_path / "icac01aaq_flt.fits", np.ones((8, 8), np.float32)))
    with _cache.fits_handle(path) as handle:
        _cache.clear_caches()
        assert not handle.closed  # still in use
        assert handle.hdul[1].data[0, 0] == 1.0
    assert handle.closed


def test_cache_threads_read_same_file(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(256, 256)).astype(np.float32)
    chip = open_exposure(_write(tmp_path / "icac01aaq_flt.fits", data)).chips[0]
    errors = []

    def worker(k):
        try:
            for j in range(20):
                y0 = (k * 37 + j * 11) % 200
                sci = chip.read((y0, y0 + 50, 10, 60))[0]
                if not np.array_equal(sci, data[y0:y0 + 50, 10:60]):
                    errors.append((k, j))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(_cache._HANDLES) == 1


def test_cache_exposures_are_private_copies(tmp_path):
    path = _write(tmp_path / "icac01aaq_flt.fits", np.ones((8, 8), np.float32))
    a = open_exposure(path)
    b = open_exposure(path)
    assert a is not b and a.chips is not b.chips and a.chips[0] is b.chips[0]
    a.chips.clear()
    assert len(open_exposure(path).chips) == 1


def test_cache_read_raw_swaps_once_with_exact_bits(tmp_path, monkeypatch):
    """read_raw gives native-endian values with the file's exact bits (NaN payloads, -0.0,
    subnormals; the oracle: the big-endian bytes astropy wrote, swapped by numpy), and
    Chip.read hands those arrays out as they are (fresh, writable), without a second copy."""
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2**32, (40, 36), dtype=np.uint32)
    bits[0, :4] = [0x7FC00001, 0xFFA00000, 0x80000000, 0x00000001]  # NaNs, -0.0, subnormal
    data = bits.view(np.float32)
    path = _write(tmp_path / "icac01aaq_flt.fits", data)
    made = []
    original = _cache.FitsHandle.read_raw

    def spy(self, layout, region):
        made.append(original(self, layout, region))
        return made[-1]

    monkeypatch.setattr(_cache.FitsHandle, "read_raw", spy)
    chip = open_exposure(path).chips[0]
    with fits.open(path) as h:
        want = np.asarray(h["SCI"].data).astype(">f4").byteswap().view("<f4")
    for box in [(0, 40, 0, 36), (3, 31, 2, 17)]:
        made.clear()
        sci, _, dq = chip.read(box, err=False)
        assert sci.dtype == np.float32 and sci.dtype.isnative and sci.flags.writeable
        np.testing.assert_array_equal(sci.view(np.uint32),
                                      want[box[0]:box[1], box[2]:box[3]].view(np.uint32))
        assert dq.dtype == np.uint16 and not dq.any()
        assert all(a.dtype.isnative for a in made)
        assert made[0] is sci  # no copy after read_raw
        assert np.shares_memory(made[1], dq)
        sci[:] = 1.0  # the caller's own array: the next read is unchanged
        np.testing.assert_array_equal(chip.read_sci(box).view(np.uint32),
                                      want[box[0]:box[1], box[2]:box[3]].view(np.uint32))


def _mapped_rss_kib(path) -> int | None:
    """Resident KiB of this process's mappings of ``path`` (/proc/self/smaps), None if unknown."""
    try:
        lines = open("/proc/self/smaps").read().splitlines()
    except OSError:
        return None
    total, inside = 0, False
    for line in lines:
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            inside = len(head) >= 6 and head[-1] == str(path)
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


@pytest.mark.parametrize("libc", [True, False])
def test_cache_read_raw_releases_pages(tmp_path, monkeypatch, libc):
    """The pages read_raw / read_raw_at copied from the file's map are released afterwards
    (MADV_DONTNEED: they do not stay resident in the process), through libc's madvise by ctypes
    (a foreign call releases the GIL) when there is one, else mmap.madvise; values exact."""
    if _cache._DONTNEED is None:
        pytest.skip("no MADV_DONTNEED on this platform")
    calls = []
    if libc:
        if _memory._MADVISE is None:
            pytest.skip("no libc madvise")
        original = _memory._MADVISE

        def counting(addr, length, advice):
            calls.append((addr % _cache._PAGE, length, advice))
            return original(addr, length, advice)
        monkeypatch.setattr(_memory, "_MADVISE", counting)
    else:
        monkeypatch.setattr(_memory, "_MADVISE", None)
    data = np.arange(512 * 640, dtype=np.float32).reshape(512, 640)
    path = _write(tmp_path / "icac01aaq_flt.fits", data)
    chip = open_exposure(str(path)).chips[0]
    np.testing.assert_array_equal(chip.read_sci((0, 512, 0, 640)), data)
    rows, cols = np.array([3, 200, 511]), np.array([0, 17, 639])
    sci, _, dq = chip.read_at(rows, cols, err=False)
    np.testing.assert_array_equal(sci, data[rows, cols])
    assert not dq.any()
    rss = _mapped_rss_kib(path)
    if rss is not None:  # the SCI is 1280 KiB; astropy's own map of the file may keep a few pages
        assert rss < 256
    if libc:
        assert calls and all(a == 0 and n > 0 and adv == _cache._DONTNEED for a, n, adv in calls)


def test_cache_release_pages_reports_failure():
    """A madvise the kernel refuses (start not page-aligned: EINVAL) raises OSError."""
    if _memory._MADVISE is None:
        pytest.skip("no libc madvise")
    import mmap

    mm = mmap.mmap(-1, 4 * _cache._PAGE)
    view = np.frombuffer(mm, np.uint8)
    with pytest.raises(OSError):
        _memory.drop_map_pages(mm, view, 0, 1, _cache._PAGE)
    _memory.drop_map_pages(mm, view, 0, _cache._PAGE, _cache._PAGE)  # aligned: fine
    del view
    mm.close()
