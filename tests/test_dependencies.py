"""Item 6 of issue 24: setup.cfg's floors are versions the code runs with.

Read from the installed packages' metadata (the versions every test here runs with): each floor is
met by what is installed, keeps its major version (and minor below 1.0, where a minor breaks APIs),
and is no lower than what the installed packages themselves require of each other; where the code
uses an API introduced later, the floor says so (API_FLOORS, with the evidence)."""

from __future__ import annotations

import configparser
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

SETUP = Path(__file__).resolve().parents[1] / "setup.cfg"

API_FLOORS = {
    "transformers": ("5.0", "transformers.initialization.no_init_weights, from_pretrained(dtype=), the 'cache' kwarg"),
    "torch": ("2.6", "transformers 5 and accelerate require it; init_process_group(device_id=) is 2.3+"),
}
LOOSE = {"torch"}
"""Clusters bring their own CUDA build of torch: only the API floor is held. (Calendar-versioned
packages, e.g. regex 2026.x, have no major to keep.)"""


def _floors() -> dict[str, Version]:
    cfg = configparser.ConfigParser()
    cfg.read(SETUP)
    out = {}
    for line in cfg["options"]["install_requires"].splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (low,) = [s.version for s in req.specifier if s.operator == ">="]
            out[req.name.lower()] = Version(low)
    return out


def _installed(name: str) -> Version | None:
    try:
        return Version(version(name))
    except PackageNotFoundError:
        return None


def test_every_floor_is_met_by_the_installed_version_and_keeps_its_major():
    problems = []
    for name, floor in _floors().items():
        have = _installed(name)
        if have is None:
            continue
        if have < floor:
            problems.append(f"{name}: floor {floor} but {have} installed")
        elif name not in LOOSE and have.major < 2000 and (floor.major != have.major or (have.major == 0 and floor.minor != have.minor)):
            problems.append(f"{name}>={floor}: the code runs with {have}; "
                            f"{'0.x minors' if have.major == 0 else 'majors'} break APIs")
    assert not problems, "\n".join(problems)


def test_no_floor_is_below_what_the_code_or_the_other_packages_need():
    floors, problems = _floors(), []
    for name, (low, why) in API_FLOORS.items():
        if floors[name] < Version(low):
            problems.append(f"{name}>={floors[name]}: the code needs {low} ({why})")
    for name in floors:
        if _installed(name) is None:
            continue
        for line in requires(name) or []:
            req = Requirement(line)
            wanted = req.name.lower()
            if wanted not in floors or (req.marker and not req.marker.evaluate({"extra": "torch"})):
                continue
            for spec in req.specifier:
                if spec.operator == ">=" and floors[wanted] < Version(spec.version):
                    problems.append(f"{wanted}>={floors[wanted]}: installed {name} {_installed(name)} needs {spec}")
    assert not problems, "\n".join(problems)


def test_python_floor_is_what_the_dependencies_need():
    from importlib.metadata import metadata

    from packaging.specifiers import SpecifierSet

    cfg = configparser.ConfigParser()
    cfg.read(SETUP)
    ours = Version(cfg["options"]["python_requires"].strip().lstrip(">="))
    for name in _floors():
        needs = metadata(name).get("Requires-Python") if _installed(name) else None
        for spec in SpecifierSet(needs or ""):
            if spec.operator == ">=":
                assert ours >= Version(spec.version), f"python_requires >={ours}, but {name} needs {spec}"
