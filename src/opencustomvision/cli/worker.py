"""``ocv worker``: run jobs (training, ...) handed over through RQ on Redis (``OCV_QUEUE_URL``), beside any number
of ``ocv serve`` replicas on the same database and blob store."""

from __future__ import annotations

import argparse
import logging
import sys

from opencustomvision.config import Settings


def worker(args: argparse.Namespace) -> int:
    settings = Settings.from_env(args.data_dir)
    if not settings.queue_url:
        print("ocv worker: set OCV_QUEUE_URL=redis://host:port/db (without it, `ocv serve` runs jobs itself)", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from opencustomvision.app import BACKBONES_TO_PREPARE, build_core
    from opencustomvision.jobs.queue import new_worker_id
    from opencustomvision.jobs.rq_queue import RqJobQueue, RqWorker
    from opencustomvision.jobs.runner import JobRunner

    core = build_core(settings)
    core.backbones.prepare(BACKBONES_TO_PREPARE)  # the first job then waits only for what is left
    runner = JobRunner(core.sessions, core.handlers, worker_id=new_worker_id("rq"))
    process = RqWorker(RqJobQueue(settings.queue_url), core.sessions, runner, maintenance=core.maintenance(settings))
    print(f"ocv worker {runner.worker_id}: jobs from {settings.queue_url.split('@')[-1]}", flush=True)
    return process.run(burst=args.burst)


def register(commands: argparse._SubParsersAction, data_dir: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("worker", parents=[data_dir], help="run jobs queued through Redis (OCV_QUEUE_URL)")
    parser.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(run=worker)
