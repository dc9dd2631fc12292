"""Call AstroDrizzle's own driz_cr and median numerics on plain arrays (test oracles only)."""

from __future__ import annotations

import numpy as np
from drizzlepac import drizCR


class _Chip:
    def __init__(self, conv, gain, rn, sky, cte_dir):
        self.group_member = True
        self.outputNames = {"blotImage": "blot", "crmaskImage": "crmask"}
        self._conversionFactor = conv
        self._effGain = gain
        self._rdnoise = rn
        self.subtractedSky = sky
        self.cte_dir = cte_dir
        self.dq_extn = "dq,1"


class _Image:
    """The few attributes of drizzlepac's imageObject that drizCR._driz_cr reads."""

    def __init__(self, sci, blot, chip):
        self._numchips = 1
        self.scienceExt = "sci"
        self.inmemory = True
        self._sci = sci
        self._chip = chip
        self.virtualOutputs = {"blot": [type("H", (), {"data": blot})()]}
        self.saved = {}
        self.outputNames = {"crcorImage": "crcor"}
        self._filename = "fake.fits"

    def __getitem__(self, exten):
        return self._chip

    def getData(self, exten):
        return self._sci

    def buildMask(self, chip, bits):
        return np.ones(self._sci.shape, dtype=bool)

    def saveVirtualOutputs(self, d):
        self.saved.update(d)


def drizzlepac_crmask(sci, blot, *, sky, gain, readnoise, snr, scale, grow, ctegrow, cte_dir=0,
                      conv=1.0):
    """drizzlepac.drizCR._driz_cr on arrays; returns True = cosmic ray."""
    chip = _Chip(float(conv), float(gain), float(readnoise), float(sky), cte_dir)
    img = _Image(np.array(sci, dtype=np.float32), np.array(blot, dtype=np.float32), chip)
    pars = {"driz_cr_grow": grow, "driz_cr_ctegrow": ctegrow, "driz_cr_snr": snr,
            "driz_cr_scale": scale, "crbit": 4096, "driz_cr_corr": False, "inmemory": True}
    drizCR._driz_cr(img, img.virtualOutputs, pars)
    good = img.saved["crmask"][0].data
    return good == 0
