"""Every example command that `mlu --help` (and each subcommand's help) prints, and every command
in the blocks marked `<!-- runnable -->` of the README and
of every docs/ page, is accepted: its config loads and validates.

Training examples run with `--print-config` (the config is what such an example gets wrong; the
training itself is covered by the job tests), the demo's with `--plan`, `mlu sweep SPEC` as
`mlu sweep plan SPEC`, `mlu world` for real into a temporary directory. Commands with a
placeholder (`<run>`, `SWEEP.yaml`, `...`), and status/cancel/export/sync (they need existing runs), are not run.
"""

import re
import shlex
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # one subprocess per example (about 3 s each)

from conftest import ROOT, clean_env
from mlu_dist.cli import build_parser


def help_examples() -> list[str]:
    parser = build_parser()
    texts = [parser.epilog or ""]
    for sub in parser._subparsers._group_actions[0].choices.values():
        texts += [sub.epilog or "", sub.description or ""]
    return [line for text in texts for line in text.splitlines()]


DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def runnable_blocks(path) -> list[str]:
    return re.findall(r"<!-- runnable -->\s*```bash\n(.*?)```", path.read_text(), flags=re.S)


def readme_examples() -> list[str]:
    """The commands of every block marked runnable, in the README and in every docs/ page."""
    assert runnable_blocks(ROOT / "README.md"), "README has no block marked <!-- runnable -->"
    return [line for page in DOC_PAGES for block in runnable_blocks(page) for line in block.splitlines()]


def commands(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = line.strip().split("#")[0].strip()
        line = re.split(r"\s{2,}", line)[0]  # help texts put a description after two or more spaces
        placeholder = "<" in line or "..." in line or re.search(r"\b[A-Z][A-Z_]+(\.yaml)?\b", line)
        if line.startswith("mlu ") and not placeholder and not re.match(r"mlu (sweep (status|cancel)|export|sync)\b", line):
            out.append(line)
    return out


def as_check(cmd: str, tmp_path) -> list[str]:
    args = shlex.split(cmd)[1:]
    if args[0] in ("base", "inject", "unlearn", "eval"):
        return args + ["--print-config"]
    if args[0] == "demo":
        return args + ["--plan"]
    if args[0] == "sweep" and args[1] != "plan":
        return ["sweep", "plan"] + args[1:]
    if args[0] == "world":
        return [a if a != args[args.index("--out") + 1] else str(tmp_path / "world") for a in args]
    return args


EXAMPLES = sorted(set(commands(help_examples()) + commands(readme_examples())))


def test_examples_are_found():
    assert any(c.startswith("mlu base") for c in EXAMPLES) and any(c.startswith("mlu sweep") for c in EXAMPLES)


@pytest.mark.parametrize("cmd", EXAMPLES)
def test_every_example_command_is_accepted(cmd, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mlu_dist.cli", *as_check(cmd, tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, env=clean_env(), timeout=300)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
