"""Run the SkyCells of a plan (``hapdask plan``) on a SLURM or PBS cluster with dask-jobqueue.

Usage (on a login node, inside the environment where hapdask is installed)::

    pip install dask-jobqueue
    hapdask plan inventory.parquet --output /proj/plan
    python deploy/hpc/slurm_mvm.py /proj/plan --all --output /proj/mvm --jobs 8
    python deploy/hpc/slurm_mvm.py /proj/plan p1889x07y19 p1889x08y19 --output /proj/mvm

The script starts the batch-system cluster, then runs exactly ``hapdask mvm --plan PLAN ...
--scheduler <the cluster's scheduler address>`` in this process: every SkyCell graph runs on
the batch jobs' workers, never on the login node. Re-running resumes (finished SkyCells are
skipped). ``--queue local`` starts a ``distributed.LocalCluster`` instead (what the tests use
as a stand-in for the job queue: same code path, same ``--scheduler`` address). Edit
:func:`make_cluster` for your site (queue, account, memory, walltime).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def make_cluster(queue: str, jobs: int):
    """Start the cluster: SLURMCluster / PBSCluster (dask-jobqueue) or a LocalCluster."""
    if queue == "local":
        from distributed import LocalCluster

        return LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address="127.0.0.1:0")
    import dask_jobqueue

    kind = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[queue]
    extra = {"job_extra_directives": ["--exclusive"]} if queue == "slurm" else {}
    cluster = kind(cores=8, processes=2, memory="32GiB", walltime="04:00:00", **extra)
    cluster.scale(jobs=jobs)
    return cluster


def main(argv: Sequence[str] | None = None) -> int:
    """Start the cluster and run ``hapdask mvm --plan`` on it; returns its exit code."""
    from hapdask.cli import main as hapdask_main

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", help="plan directory written by hapdask plan")
    parser.add_argument("skycells", nargs="*", help="SkyCells to build (or --all)")
    parser.add_argument("--all", action="store_true", help="every SkyCell of the plan")
    parser.add_argument("--output", required=True, help="output root (shared file system)")
    parser.add_argument("--jobs", type=int, default=4, help="batch jobs (or local workers)")
    parser.add_argument("--queue", choices=("slurm", "pbs", "local"), default="slurm")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="SkyCell graphs in flight at once")
    args, extra = parser.parse_known_args(argv)  # anything else goes to hapdask mvm
    cluster = make_cluster(args.queue, args.jobs)
    try:
        print("dashboard:", cluster.dashboard_link, flush=True)
        cmd = ["mvm", "--plan", args.plan, *args.skycells, "--output", args.output,
               "--scheduler", cluster.scheduler_address,
               "--concurrency", str(args.concurrency), *extra]
        if args.all:
            cmd.append("--all")
        return hapdask_main(cmd)
    finally:
        cluster.close()


if __name__ == "__main__":
    raise SystemExit(main())
