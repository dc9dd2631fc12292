"""The product written in full-width bands of rows from its tiles kept in the scratch
(``drizzle_graph(banded_product=True)``, what ``hapdask drizzle`` does on local threads): the
product file is the one the tile-by-tile writes make, byte for byte but for its date cards, and
each kept tile is read after it was made and deleted after its last read."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from astropy.io import fits

import hapdask.mosaic.job as job_module
import hapdask.mosaic.scratch as scratch_module
from hapdask.mosaic.job import drizzle_graph
from hapdask.mosaic.scratch import OWNER_FILE
from hapdask.scheduling import local_compute

PARAMS = {"static": True, "skysub": True, "skymethod": "match", "combine_type": "minmed",
          "combine_nhigh": 1, "final_bits": "336", "driz_sep_bits": "336", "context": True,
          "driz_sep_kernel": "square", "final_wht_type": "EXP", "final_units": "counts"}


def _blocks_without_dates(path) -> list[bytes]:
    """The file's 2880-byte blocks, the header cards holding dates blanked."""
    raw = bytearray(open(path, "rb").read())
    with fits.open(path) as h:
        for hdu in h:
            start = hdu.fileinfo()["hdrLoc"]
            for i, card in enumerate(hdu.header.cards):
                if "DATE" in card.keyword:
                    raw[start + 80 * i:start + 80 * (i + 1)] = b" " * 80
    return [bytes(raw[i:i + 2880]) for i in range(0, len(raw), 2880)]


@pytest.mark.parametrize("rows_bytes", [3000, 2 << 20])  # bands of 1 row; whole tile rows
def test_banded_product_same_bytes_and_tiles_deleted(trio, tmp_path, monkeypatch, file_events,
                                                     rows_bytes):
    plain = drizzle_graph(trio, tmp_path / "plain" / "m", params=PARAMS, tile_size=96,
                          region_size=96)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = local_compute(plain.graph, plain.keys, nthreads=2)[0]
    plain.scratch.remove()

    monkeypatch.setattr(job_module, "_ROWS_BYTES", rows_bytes)
    job = drizzle_graph(trio, tmp_path / "band" / "m", params=PARAMS, tile_size=96,
                        region_size=96, discard=True, banded_product=True)
    directory = job.scratch.directory
    events = file_events(lambda p: p.startswith(directory) and "/final-" in p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = local_compute(job.graph, job.keys, nthreads=2)[0]
        for future in list(scratch_module._DISCARDING.get(directory, [])):
            future.result()
        assert sorted(os.listdir(directory)) == [OWNER_FILE]
    finally:
        monkeypatch.undo()
        job.scratch.remove()
    made = {p: t for t, k, p in events if k == "made"}
    unlinked = {p: t for t, k, p in events if k == "unlink"}
    opened = [(t, p) for t, k, p in events if k == "open"]
    assert len(made) == len(job.writes) > 1 and set(unlinked) == set(made)
    assert {p for _, p in opened} == set(made)
    assert all(made[p] < t < unlinked[p] for t, p in opened)
    with fits.open(out.output) as h:
        assert h[0].header["NAXIS"] == 0 and h["CTX"].data.any()
    assert _blocks_without_dates(out.output) == _blocks_without_dates(ref.output)


def _summary(window, sci, wht) -> tuple:
    """A tile's summary as ``hapdask svm``'s S_REGION mask takes it from its write task."""
    return tuple(window), sci.tobytes(), int(np.count_nonzero(wht))


def test_banded_product_with_tile_summary(trio, tmp_path):
    """With ``tile_summary``, the tasks keeping the tiles of a banded product return what the
    tile writes do: each tile's weighted-pixel count and its summary of the values written,
    here compared with the product file's own pixels."""
    job = drizzle_graph(trio, tmp_path / "band" / "m", params=PARAMS, tile_size=96,
                        region_size=96, banded_product=True, tile_summary=_summary)
    writes = sorted(job.writes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = local_compute(job.graph, [*job.keys, *[job.writes[t] for t in writes]],
                                nthreads=2)
    finally:
        job.scratch.remove()
    values = out[len(job.keys):]
    with fits.open(out[0].output) as h:
        sci, wht = h["SCI"].data.astype(np.float32), h["WHT"].data
        for (count, (window, raw, nonzero)), t in zip(values, writes, strict=True):
            y0, y1, x0, x1 = window
            assert raw == np.ascontiguousarray(sci[y0:y1, x0:x1]).tobytes(), t
            assert count == nonzero == np.count_nonzero(wht[y0:y1, x0:x1]), t
    assert len(writes) > 1
