"""Run ``hapdask mvm`` for a list of SkyCells on a SLURM cluster with dask-jobqueue.

Usage (on a login node, inside the environment where hapdask is installed)::

    pip install dask-jobqueue
    python deploy/hpc/slurm_mvm.py skycells.txt --poller-dir /proj/pollers --output /proj/mvm

``skycells.txt`` holds one SkyCell name per line; each needs ``<poller-dir>/<name>.out``.
Edit the ``SLURMCluster`` arguments for your site (queue, account, memory, walltime).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    """Start a SLURM-backed Dask cluster and process every SkyCell listed."""
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    import hapdask.mvm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("skycells", type=Path, help="file with one SkyCell name per line")
    parser.add_argument("--poller-dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs (workers) to start")
    args = parser.parse_args()

    cluster = SLURMCluster(
        cores=8, processes=2, memory="32GiB", walltime="04:00:00",
        job_extra_directives=["--exclusive"],
    )
    cluster.scale(jobs=args.jobs)
    with Client(cluster) as client:
        print("dashboard:", client.dashboard_link)
        for name in args.skycells.read_text().split():
            poller = args.poller_dir / f"{name}.out"
            hapdask.mvm.run(name, inputs=[str(poller)], output=str(args.output / name))


if __name__ == "__main__":
    main()
