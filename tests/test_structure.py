"""The boundaries the codebase promises, checked on its source (so they cannot silently rot)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, clean_env

PKG = ROOT / "mlu_dist"


def imports_of(path: Path) -> list[str]:
    """Every module a file imports, at any depth (function-local imports included)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def modules(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in (PKG / part).rglob("*.py")) if parts else sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("package", ["eval", "unlearn", "data", "inject"])
def test_evaluation_objectives_and_data_never_import_the_engine_or_jobs(package):
    bad = {str(p.relative_to(ROOT)): m for p in modules(package) for m in imports_of(p)
           if m.startswith(("mlu_dist.engine", "mlu_dist.jobs"))}
    assert not bad, f"{package}/ must not import the engine or jobs: {bad}"


BACKEND_MODULES = ("mlu_dist.engine.deepspeed_engine", "mlu_dist.engine.torch_engine")


def test_jobs_reach_engines_only_through_the_protocol_and_registry():
    """jobs/ builds engines with mlu_dist.engine.engines' factories and calls the Protocols' methods;
    a backend module imported by a job is a job that knows one backend."""
    bad = {str(p.relative_to(ROOT)): m for p in modules("jobs") for m in imports_of(p) if m in BACKEND_MODULES}
    assert not bad, f"jobs/ must use mlu_dist.engine.engines, not a backend module: {bad}"
    getattrs = [f"{p.relative_to(ROOT)}:{node.lineno}" for p in modules("jobs") for node in ast.walk(ast.parse(p.read_text()))
                if isinstance(node, ast.Call) and ast.unparse(node.func) == "getattr" and len(node.args) > 1
                and ast.unparse(node.args[0]).endswith("engine")]
    assert not getattrs, f"an engine's attributes are the Protocol's; no getattr on an engine: {getattrs}"


def test_neutral_modules_import_neither_engine_nor_jobs():
    for name in ("tokens.py", "losses.py", "objectives.py", "train_config.py", "runs/layout.py", "registry.py", "comm.py"):
        bad = [m for m in imports_of(PKG / name) if m.startswith(("mlu_dist.engine", "mlu_dist.jobs"))]
        assert not bad, f"{name} imports {bad}"


COLLECTIVES = {"all_reduce", "all_gather", "all_gather_object", "all_to_all", "broadcast", "broadcast_object_list",
               "reduce", "reduce_scatter", "gather", "scatter", "barrier", "send", "recv"}


def test_every_collective_goes_through_comm():
    """Collectives build tensors; only mlu_dist/comm.py may call them, on the backend's device."""
    bad = []
    for path in modules():
        if path.name == "comm.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in COLLECTIVES and \
                    ast.unparse(node.value).endswith(("distributed", "dist", "tdist")):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not bad, f"call mlu_dist.comm instead: {bad}"


def test_configs_never_import_jobs():
    configs = [PKG / "experiment.py", PKG / "launcher" / "spec.py", PKG / "train_config.py"]
    configs += [p for p in PKG.rglob("config.py")]
    bad = {str(p.relative_to(ROOT)): m for p in configs for m in imports_of(p) if m.startswith("mlu_dist.jobs")}
    assert not bad, bad


@pytest.mark.parametrize("library, allowed", [("deepspeed", "engine/deepspeed_engine.py"),
                                              ("submitit", "launcher/slurm.py"), ("wandb", "tracking/wandb_tracker.py"),
                                              ("wandb_workspaces", "tracking/wandb_views.py")])
def test_each_heavy_dependency_has_one_import_site(library, allowed):
    sites = sorted(str(p.relative_to(PKG)) for p in modules() for m in imports_of(p)
                   if m == library or m.startswith(library + "."))
    assert set(sites) == {allowed}, f"{library} imported in {sites}; only {allowed} may"


def test_no_function_is_longer_than_80_lines():
    long = []
    for p in modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "plan", "configs/sweeps/paper.yaml"],
                                  ["base", "--show-fields"], ["unlearn", "--from", "x", "--print-config"]])
def test_planning_and_help_import_no_torch(argv, tmp_path):
    """Planning a 34-run sweep or reading help must not pay for (or need) torch, deepspeed, transformers."""
    code = ("import sys\nfrom mlu_dist.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'deepspeed', 'transformers', 'datasets'})\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                          env=clean_env(), timeout=120)
    assert "HEAVY []" in proc.stderr, proc.stderr[-3000:]


def test_no_mutable_default_arguments():
    """A default evaluated once and shared by every call (a list, a dict, a dataclass instance)."""
    bad = []
    for p in modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                    mutable = isinstance(default, (ast.List, ast.Dict, ast.Set)) or (
                        isinstance(default, ast.Call) and not (isinstance(default.func, ast.Name)
                                                               and default.func.id in ("frozenset", "tuple")))
                    if mutable:
                        bad.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {ast.unparse(default)}")
    assert not bad, bad


def _runtime_imports(path: Path) -> set[str]:
    """Modules a file imports at run time, at any depth (``if TYPE_CHECKING:`` blocks left out)."""
    skip = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_package_has_no_import_cycle():
    """No module imports (even lazily, inside a function) one that imports it back: a cycle is a
    boundary that does not hold. A package's __init__ may import its own modules."""
    names = {_module_name(p): p for p in modules()}
    graph = {m: {i for i in _runtime_imports(p) if i in names and i != m} for m, p in names.items()}
    cycles = []

    def visit(node, path):
        for nxt in graph[node]:
            if nxt in path:
                cycle = path[path.index(nxt):] + [nxt]
                if not any(nxt.startswith(m + ".") or m == nxt for m in cycle[:-1] if m != nxt and
                           names[m].name == "__init__.py"):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in seen:
                seen.add(nxt)
                visit(nxt, path + [nxt])

    for start in graph:
        seen = {start}
        visit(start, [start])
    assert not cycles, sorted(set(cycles))[:10]
