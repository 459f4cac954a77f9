"""Out-of-tree components: a researcher's own module, named in MLU_PLUGINS, registers a method and a
tracker; `mlu sweep` and its worker processes load it, and the method runs as a real sweep cell."""

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, clean_env

PLUGIN = textwrap.dedent('''
    import json
    from pathlib import Path

    from mlu_dist.tracking import TRACKERS
    from mlu_dist.unlearn.methods import METHODS, Method, ga_forget


    @METHODS.register("half_ga")
    class HalfGA(Method):
        """Gradient ascent at half strength: a method that lives outside the package."""

        def forget(self, engine, micro, ctx):
            loss, metrics = ga_forget(engine, micro, ctx)
            return 0.5 * loss, metrics


    class Recorder:
        """A tracker that keeps the keys it was given, one JSON line a step."""

        def __init__(self, ctx):
            self.path = Path(ctx.run_dir) / "recorded.jsonl"

        def log(self, metrics, step):
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, "keys": sorted(metrics)}) + "\\n")

        def summary(self, metrics):
            pass

        def table(self, key, columns, rows):
            pass

        def close(self, failed=False):
            pass


    TRACKERS.register("recorder")(Recorder)
''')

FAST = ["engine.backend=torch", "data.langs=[en,de]", "tracking.wandb=false", "tracking.trackers=[recorder]",
        "base.steps=10", "inject.train.steps=4", "inject.train.eval_every=0", "unlearn.train.steps=2",
        "unlearn.train.eval_every=2", "eval.n_boot=20"]


@pytest.mark.slow
def test_a_plugin_method_and_tracker_run_through_a_real_sweep_cell(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(PLUGIN)
    cmd = [sys.executable, "-m", "mlu_dist.cli", "sweep", "configs/sweeps/test.yaml", "executor=local",
           f"out_dir={tmp_path / 'runs'}", "name=plugin", "axes.inject_langs=[de]", "axes.methods=[half_ga]",
           "axes.forget_langs=[en]", "overrides=[" + ",".join(f"'{o}'" for o in FAST) + "]"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=clean_env(MLU_PLUGINS=str(plugin)),
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    done = list((tmp_path / "runs" / "plugin" / "unlearn").glob("*/half_ga-en-*/DONE.json"))
    assert len(done) == 1, proc.stdout[-2000:]
    run = done[0].parent
    assert "method: half_ga" in (run / "config.yaml").read_text()
    recorded = [json.loads(line) for line in (run / "recorded.jsonl").read_text().splitlines()]
    assert recorded and any("train/loss" in r["keys"] for r in recorded)


def test_without_the_plugin_its_method_is_one_clear_config_error(tmp_path):
    from mlu_dist.cli import main

    rc = main(["sweep", "plan", "configs/sweeps/test.yaml", "axes.methods=[half_ga]"])
    assert rc == 2


def test_a_plugin_that_fails_to_import_is_named(tmp_path, capsys, monkeypatch):
    from mlu_dist.cli import main

    bad = tmp_path / "broken.py"
    bad.write_text("import not_a_module_anywhere\n")
    monkeypatch.setenv("MLU_PLUGINS", str(bad))
    assert main(["sweep", "plan", "configs/sweeps/test.yaml"]) == 2
    err = capsys.readouterr().err
    assert "broken.py" in err and "not_a_module_anywhere" in err
    monkeypatch.setenv("MLU_PLUGINS", str(tmp_path / "missing.py"))
    assert main(["sweep", "plan", "configs/sweeps/test.yaml"]) == 2
    assert "no plugin file" in capsys.readouterr().err
