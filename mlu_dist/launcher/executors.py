"""Executors: where a sweep's cells run. One registered class per backend.

An executor submits the cells that still need to run (in dependency order, or as a scheduler's
jobs with dependencies), tells which recorded jobs are still queued, reads their scheduler states
for `mlu sweep status` and cancels them. Every executor runs each cell through
``mlu_dist.launcher.tasks`` (the same code on a laptop and on a node), so a new cluster backend
(Kubernetes, LSF, ...) is one module that registers a class here, e.g. from a plugin
(``MLU_PLUGINS``, see docs/extending.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from mlu_dist.registry import Registry

if TYPE_CHECKING:
    from mlu_dist.launcher.plan import Cell
    from mlu_dist.launcher.spec import SweepSpec


class Executor(Protocol):
    def submit(self, spec: SweepSpec, cells: list[Cell], todo: list[Cell], manifest, wait: bool) -> dict[str, str]:
        """Run or submit ``todo`` (``cells`` is the whole plan, for dependencies); record job ids and
        statuses in ``manifest``; return ``{cell id: status}`` ("submitted" when not waiting)."""
        ...

    def queued(self, job_of_cell: dict[str, str | None]) -> dict[str, str]:
        """The cells whose recorded job the scheduler still holds: ``{cell id: job id}``."""
        ...

    def states(self, job_ids: list[str]) -> dict[str, str]:
        """The scheduler's state of each job id it knows (``RUNNING``, ``FAILED``, ...)."""
        ...

    def cancel(self, job_ids: list[str]) -> list[str]:
        """Cancel these jobs; returns the ids asked to stop."""
        ...


EXECUTORS: Registry = Registry("executor")
# built-ins by path: the Slurm executor imports submitit, which planning and status never need
EXECUTORS.register("slurm")("mlu_dist.launcher.slurm:SlurmExecutor")
EXECUTORS.register("local")("mlu_dist.launcher.run:LocalExecutor")
EXECUTORS.register("debug")("mlu_dist.launcher.run:DebugExecutor")


def build_executor(name: str) -> Executor:
    """The executor registered as ``name``, ready to use."""
    return EXECUTORS.load(name)()
