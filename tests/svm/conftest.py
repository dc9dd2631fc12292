"""Session fixtures of the SVM tests: a small simulated set (visits 01: WFC3/UVIS + WFC3/IR,
02: WFC3/IR, 03: ACS/WFC) and one ``hapdask svm`` run of visits 01 and 03."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest

from hapdask.align import FileCatalog
from hapdask.scheduling import local_compute
from hapdask.svm import plan, runner

SKYCELL = "p1889x07y19"


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    from hapdask.simulate import simulate_visits

    return simulate_visits(SKYCELL, tmp_path_factory.mktemp("svmsim") / "set", visits=3,
                           small=True)


def _run(poller, out, **kw):
    from hapdask.svm import run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run(poller, output=out, log=lambda m: None, **kw)


@pytest.fixture(scope="session")
def input_digests(sim):
    """SHA-256 of every simulated input before any SVM run."""
    return {p: file_digest(p) for p in sim.exposures}


@pytest.fixture(scope="session")
def wfc3_run(sim, input_digests, tmp_path_factory):
    """Visit 01 (WFC3/UVIS F475W x2 + WFC3/IR F160W x2), aligned to the simulator's catalog."""
    out = tmp_path_factory.mktemp("svm01")
    poller = next(p for p in sim.svm_pollers if p.name == "wfc3_f3s_01_input.out")
    return _run(poller, out, refcat=sim.refcat), poller, out


@pytest.fixture(scope="session")
def acs_run(sim, input_digests, tmp_path_factory):
    """Visit 03 (ACS/WFC F775W x2 + F850LP x2), with --update-inputs."""
    out = tmp_path_factory.mktemp("svm03")
    poller = next(p for p in sim.svm_pollers if p.name == "acs_f3t_03_input.out")
    return _run(poller, out, refcat=sim.refcat, update_inputs=True), poller, out


@pytest.fixture(name="file_digest")
def file_digest_fixture():
    """``f(path) -> SHA-256`` of a file's bytes."""
    return file_digest


@pytest.fixture
def run_svm():
    return _run


@pytest.fixture
def aligned_acs_visit(sim):
    """A function giving the demo-like ACS visit's plan and its detectors' alignment states
    (computed when called, so a test can patch what it records first)."""
    def aligned():
        poller = next(q for q in sim.svm_pollers if q.name == "acs_f3t_03_input.out")
        p = plan(poller)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph, akeys = runner.alignment_graph(p, FileCatalog(sim.refcat))
            states = dict(zip(akeys["states"],
                              local_compute(graph, list(akeys["states"].values())),
                              strict=True))
        return p, states

    return aligned
