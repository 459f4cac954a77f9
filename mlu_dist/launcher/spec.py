"""The sweep spec: a base experiment plus axes, executors and per-stage resources."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlu_dist.config import check_choice, check_positive
from mlu_dist.data.translate import TranslateConfig
from mlu_dist.langs import check_langs
from mlu_dist.launcher.executors import EXECUTORS

STAGES = ("translate", "base", "inject", "unlearn", "report")


@dataclass
class Resources:
    """What one job of a stage asks the cluster for (ignored by the local and debug executors)."""

    nodes: int = 1
    """Nodes per job; a multi-node job runs one rank per task."""
    tasks_per_node: int = 1
    """Ranks per node (one per GPU on GPU nodes)."""
    gpus_per_node: int = 0
    """GPUs per node."""
    gpu_mem_gb: float = 80.0
    """Memory of one GPU (for `mlu sweep plan --cost` and the check at submission)."""
    gpu_tflops: float = 989.0
    """Dense bf16 peak of one GPU in TFLOP/s (H100 SXM: 989), for GPU-hour estimates."""
    cpus_per_task: int = 1
    """CPU cores per rank."""
    mem_gb: float = 4.0
    """Memory per node, GB."""
    time_min: int = 60
    """Time limit per job in minutes (the job checkpoints and requeues when it runs out)."""
    partition: str = ""
    """Slurm partition (empty = the cluster's default)."""
    account: str = ""
    """Slurm account (empty = none)."""
    qos: str = ""
    """Slurm QOS (empty = none)."""
    constraint: str = ""
    """Slurm node constraint (empty = none)."""
    array_parallelism: int = 16
    """At most this many tasks of one array run at once."""
    fs_gb_per_s: float = 1.0
    """Write bandwidth of the run directories' filesystem for one job, GB/s: the signal before the
    time limit comes early enough to save the job's checkpoint (its size from the planner) at it."""

    def check(self) -> list[str]:
        return check_positive(self, "nodes", "tasks_per_node", "cpus_per_task", "mem_gb", "time_min", "array_parallelism",
                              "fs_gb_per_s")


@dataclass
class StageResources:
    translate: Resources = field(default_factory=Resources)
    """Each translation task (one per target language; wants a GPU for a real MT model)."""
    base: Resources = field(default_factory=Resources)
    """The base-model job."""
    inject: Resources = field(default_factory=Resources)
    """Each injection task."""
    unlearn: Resources = field(default_factory=Resources)
    """Each unlearning task."""
    report: Resources = field(default_factory=lambda: Resources(time_min=20))
    """The final report job."""


@dataclass
class SweepAxes:
    """What varies. Injections: inject_langs x seeds. Unlearning: each injection x methods x forget_langs."""

    inject_langs: list[str] = field(default_factory=lambda: ["de"])
    """Injection languages (one injection run each, per seed); ``en+ja+hi`` injects in several at once."""
    methods: list[str] = field(default_factory=lambda: ["ga"])
    """Unlearning methods (names of configs/methods/*.yaml)."""
    forget_langs: list[str] = field(default_factory=lambda: ["en", "orig", "all", "en+orig"])
    """Forget-language settings (the paper's four by default)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds: each sets the target/control split and the injection and unlearning seeds."""
    unlearn_langs: list[str] = field(default_factory=list)
    """Injection languages whose runs are unlearned (empty = all of inject_langs); the others are
    only evaluated, for the spread matrix."""
    forget_scopes: list[str] = field(default_factory=lambda: ["all"])
    """What the forget loss covers (unlearn.forget_scope): all, answer, qa; one unlearning run each."""
    relearn_attacks: list[str] = field(default_factory=list)
    """Relearning attacks (relearn.attacks: fake:en, fake:orig, fake_qa:orig, true_other:en) run after
    each unlearning run, and, with relearn.controls, on each unlearned injection's injected and base
    model (empty = none)."""
    relearn_methods: list[str] = field(default_factory=list)
    """Only attack the unlearning runs of these methods (empty = every method)."""

    def check(self) -> list[str]:
        from mlu_dist.unlearn.config import spec_problems
        from mlu_dist.unlearn.methods import METHODS

        out = check_langs("inject_langs", [x for entry in self.inject_langs for x in entry.split("+")])
        out += [f"unlearn_langs: '{lang}' is not one of inject_langs ({', '.join(self.inject_langs)})"
                for lang in self.unlearn_langs if lang not in self.inject_langs]
        for m in self.methods:
            out += check_choice("methods", m, METHODS.names())
        for spec in self.forget_langs:
            out += [f"forget_langs: {p}" for p in spec_problems(spec)]
        from mlu_dist.relearn.config import parse_attack
        from mlu_dist.unlearn.data import FORGET_SCOPES

        for scope in self.forget_scopes:
            out += check_choice("forget_scopes", scope, FORGET_SCOPES)
        for attack in self.relearn_attacks:
            try:
                parse_attack(attack)
            except ValueError as exc:
                out.append(f"relearn_attacks: {exc}")
        out += [f"relearn_methods: '{m}' is not one of methods ({', '.join(self.methods)})"
                for m in self.relearn_methods if m not in self.methods]
        for name in ("methods", "forget_langs", "seeds", "forget_scopes"):
            if not getattr(self, name):
                out.append(f"{name}: at least one value is needed")
        return out


@dataclass
class TeacherCell:
    """The unlearning run a teacher-distilling method (lingtea) learns from. The planner adds it for
    every injection and seed (an unlearning cell like the grid's, reused when the grid has it) and
    makes each distilling cell wait for its teacher and read that teacher's run directory."""

    method: str = ""
    """The teacher's method: any registered method that needs no teacher itself (empty = none; a
    sweep whose methods include one that distils a teacher must name it)."""
    forget_langs: str = "en"
    """The teacher's forget setting; it must name one language for each injection (en, orig or a
    language code): that language is the teacher's (lingtea's teacher_lang)."""


@dataclass
class SweepSpec:
    """A sweep: the experiment every cell starts from, the axes, the executor and resources."""

    name: str = "sweep"
    """Sweep name: run directories go to <out_dir>/<name>/."""
    out_dir: str = "runs"
    """Root of the sweep's directory (must be on a filesystem every node sees)."""
    configs: list[str] = field(default_factory=list)
    """Experiment YAML files merged into every cell, in order (as `-c` of the jobs)."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides applied to every cell."""
    axes: SweepAxes = field(default_factory=SweepAxes)
    """What varies."""
    retain_model: bool = False
    """Also train, once per seed, the retain model: the first injection's fine-tuning without its fake
    (forget) data (inject.retain_only), the reference a QA study's forget quality and privacy leakage
    are measured against. It is an injection cell of its own, evaluated like the others."""
    evaluate: bool = True
    """Run the full evaluation (mlu eval) after each injection, for the spread matrix."""
    executor: str = "local"
    """slurm (submitit job arrays with dependencies), local (subprocesses here), debug (in-process), or
    any executor a plugin registers (launcher/executors.py)."""
    local_workers: int = 1
    """Cells the local executor runs at once (respecting dependencies)."""
    local_reuse: bool = True
    """The local executor runs injection and unlearning cells in reused worker processes (imports
    paid once, not once a cell: 7-8 s a cell on 2 cores); false: a new process per cell."""
    translate: TranslateConfig = field(default_factory=lambda: TranslateConfig(to=[]))
    """Data made before the injections: with ``translate.source`` set (a raw one-language table with
    ``mapping``/``map``, or a fact set), one translate task per other language of data.langs writes
    the dataset to ``translate.out`` (default <sweep>/data), which every cell then uses as
    data.source. A finished language is reused. Empty source: data.source is used as it is."""
    resources: StageResources = field(default_factory=StageResources)
    """Per-stage Slurm resources."""
    teacher: TeacherCell = field(default_factory=TeacherCell)
    """The teacher run of the methods that distil one (lingtea), e.g. {method: npo, forget_langs: en}."""

    def check(self) -> list[str]:
        out = check_choice("executor", self.executor, EXECUTORS.names()) + check_positive(self, "local_workers")
        if "/" in self.name or not self.name:
            out.append(f"name: must be a plain, non-empty directory name, got {self.name!r}")
        return out + teacher_problems(self.teacher, self.axes.methods)


def teacher_problems(teacher: TeacherCell, methods: list[str]) -> list[str]:
    """Problems of ``teacher`` for a sweep over ``methods``: a distilling method without a teacher,
    a teacher that is no registered method or distils a teacher itself, a bad forget setting."""
    from mlu_dist.unlearn.config import spec_problems
    from mlu_dist.unlearn.methods import METHODS

    choices = [m for m in METHODS.names() if not METHODS[m].teacher_args]
    students = [m for m in methods if m in METHODS and METHODS[m].teacher_args]
    if not teacher.method and not students:
        return []
    out = check_choice("teacher.method", teacher.method, choices) if teacher.method else [
        f"teacher.method: axes.methods includes {', '.join(students)}, distilled from a teacher run: name the "
        f"teacher's method, one of {', '.join(choices)} (e.g. teacher: {{method: npo, forget_langs: en}})"]
    return out + [f"teacher.forget_langs: {p}" for p in spec_problems(teacher.forget_langs)]
