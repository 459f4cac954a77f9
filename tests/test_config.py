from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mlu_dist.config import CONFIG_DIR, ConfigError, describe, load_config
from mlu_dist.experiment import ExperimentConfig


def test_typo_gets_a_suggestion_and_the_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config(ExperimentConfig, [], ["base.micro_batch_sze=8"])
    msg = str(err.value)
    assert "base.micro_batch_sze" in msg and "Did you mean 'micro_batch_size'" in msg
    assert "grad_accum" in msg  # the valid keys of that section are listed


def test_typo_in_a_yaml_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hiden_size: 64\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*model.hiden_size.*hidden_size"):
        load_config(ExperimentConfig, [bad])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"inject.train.steps"):
        load_config(ExperimentConfig, [], ["inject.train.steps=many"])


def test_semantic_problems_are_collected_and_raised_once():
    with pytest.raises(ConfigError) as err:
        load_config(ExperimentConfig, [], ["data.langs=[en,de,xx]", "engine.zero.stage=4", "base.schedule=cosin",
                                        "model.hidden_size=-1"])
    msg = str(err.value)
    assert msg.startswith("4 config problem(s)")
    assert "data.langs: unknown language code(s) xx; " in msg
    assert "engine.zero.stage: '4' is not valid; valid: 0, 1, 2, 3" in msg
    assert "did you mean 'cosine'" in msg
    assert "model.hidden_size: must be > 0" in msg


def test_offload_and_lora_combinations_are_checked():
    with pytest.raises(ConfigError, match="optimizer offload needs ZeRO stage 1, 2 or 3"):
        load_config(ExperimentConfig, [], ["engine.zero.offload=optimizer"])
    with pytest.raises(ConfigError, match="parameter offload needs ZeRO stage 3"):
        load_config(ExperimentConfig, [], ["engine.zero.stage=2", "engine.zero.offload=optimizer+params"])
    with pytest.raises(ConfigError, match="derived from train.micro_batch_size"):
        load_config(ExperimentConfig, [], ["engine.zero.extra.train_batch_size=64"])
    with pytest.raises(ConfigError, match="LoRA runs under ZeRO stages 0-2"):
        load_config(ExperimentConfig, [], ["engine.zero.stage=3", "inject.train.lora.enabled=true"])


def test_each_job_may_have_zero_settings_of_its_own():
    """The paper's split: LoRA injection at ZeRO-2 beside full-model unlearning at ZeRO-3."""
    cfg = load_config(ExperimentConfig, [], ["engine.zero.stage=3", "engine.jobs.inject.stage=2",
                                             "inject.train.lora.enabled=true"])
    assert [cfg.engine.zero_for(j).stage for j in ("base", "inject", "unlearn", "eval")] == [3, 2, 3, 3]
    # a relearning attack runs as unlearning does, unless it has settings of its own
    split = load_config(ExperimentConfig, [], ["engine.jobs.unlearn.stage=2"])
    assert (split.engine.zero_for("relearn").stage, split.engine.zero_for("base").stage) == (2, 0)
    own = load_config(ExperimentConfig, [], ["engine.jobs.unlearn.stage=2", "engine.jobs.relearn.stage=3"])
    assert own.engine.zero_for("relearn").stage == 3
    with pytest.raises(ConfigError, match=r"set engine.jobs.inject.stage<=2"):
        load_config(ExperimentConfig, [], ["engine.jobs.inject.stage=3", "inject.train.lora.enabled=true"])
    with pytest.raises(ConfigError) as err:
        load_config(ExperimentConfig, [], ["engine.jobs.injct.stage=2", "engine.jobs.unlearn.stage=7"])
    msg = str(err.value)
    assert "engine.jobs: 'injct' is not valid (did you mean 'inject'?); valid: base, inject, unlearn, relearn, eval" in msg
    assert "engine.jobs.unlearn.stage: '7' is not valid" in msg
    with pytest.raises(ConfigError, match=r"unknown config key 'engine.jobs.inject.stagee'. Did you mean 'stage'\?"):
        load_config(ExperimentConfig, [], ["engine.jobs.inject.stagee=2"])


def test_partitioned_loading_follows_the_stage_and_the_checkpoint_size(tmp_path):
    from mlu_dist.jobs.model import partitioned_load_choice

    (tmp_path / "model.safetensors").write_bytes(b"0" * 1000)
    z3 = load_config(ExperimentConfig, [], ["engine.zero.stage=3"])
    assert partitioned_load_choice(z3, "inject", tmp_path, lazy=False) == (False, "0.00 GB checkpoint < 1 GB "
                                                                                  "(model.partitioned_load=auto)")
    assert partitioned_load_choice(z3, "inject", "org/some-hub-model", lazy=False)[0]
    lazy, why = partitioned_load_choice(z3, "inject", "org/some-hub-model", lazy=True)
    assert not lazy and "memory-maps" in why
    always = load_config(ExperimentConfig, [], ["engine.zero.stage=3", "model.partitioned_load=always"])
    assert partitioned_load_choice(always, "unlearn", tmp_path) == (True, "model.partitioned_load=always")
    split = load_config(ExperimentConfig, [], ["engine.zero.stage=3", "engine.jobs.inject.stage=2",
                                               "model.partitioned_load=always"])
    assert partitioned_load_choice(split, "inject", tmp_path) == (False, "ZeRO-2 keeps whole weights on every rank")
    with pytest.raises(ConfigError, match=r"model.partitioned_load: 'sometimes' is not valid; valid: auto, always"):
        load_config(ExperimentConfig, [], ["model.partitioned_load=sometimes"])


def test_yaml_then_overrides_in_order(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("base:\n  steps: 7\n  lr: 0.1\n")
    cfg = load_config(ExperimentConfig, ["deepspeed/zero3", a], ["base.lr=0.5"])
    assert (cfg.engine.zero.stage, cfg.base.steps, cfg.base.lr) == (3, 7, 0.5)


def test_missing_config_file_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"not found.*deepspeed/zero3"):
        load_config(ExperimentConfig, ["deepspeed/zero9"])


SHIPPED = sorted(CONFIG_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_shipped_yaml_loads_strictly(path: Path):
    OmegaConf.load(path)  # valid YAML
    if path.parent.name == "sweeps":
        from mlu_dist.launcher.spec import SweepSpec

        spec = load_config(SweepSpec, [path])  # strict, and its experiment configs must load too
        load_config(ExperimentConfig, spec.configs, spec.overrides)
    elif path.parent.name == "mappings":  # column mappings of `mlu data import`: their own strict reader
        from mlu_dist.data.importer import read_mapping

        assert read_mapping(path).columns
    else:
        load_config(ExperimentConfig, [path])  # strict: unknown keys, wrong types, bad values all raise


def test_describe_lists_every_leaf_with_its_doc():
    lines = describe(ExperimentConfig())
    assert any(line.startswith("engine.zero.stage = 0") and "ZeRO stage" in line for line in lines)
    assert any(line.startswith("data.world.names = ") for line in lines)


def test_to_dict_is_what_omegaconf_gives_for_every_cell_of_the_shipped_sweeps():
    """Run-directory hashes use the fast to_dict: it must equal OmegaConf's container exactly, or every
    finished run would get a new directory name."""
    import json

    from mlu_dist.config import to_dict
    from mlu_dist.launcher.plan import expand
    from mlu_dist.launcher.spec import SweepSpec

    checked = 0
    for name in ("demo", "paper-news", "test"):  # tiny and 8B models, LoRA, translation, attacks, seeds
        path = CONFIG_DIR / "sweeps" / f"{name}.yaml"
        for cell in expand(load_config(SweepSpec, [path], []))[:15]:
            if cell.config is not None:
                want = OmegaConf.to_container(OmegaConf.structured(cell.config), resolve=True)
                assert json.dumps(to_dict(cell.config), sort_keys=True) == json.dumps(want, sort_keys=True), cell.id
                checked += 1
    cfg = load_config(ExperimentConfig, [], [])
    cfg.inject.train.lr = 1  # an int in a float field: OmegaConf stores 1.0
    assert to_dict(cfg)["inject"]["train"]["lr"] == 1.0 and isinstance(to_dict(cfg)["inject"]["train"]["lr"], float)
    assert checked > 30


def test_the_cached_schema_is_never_changed_by_a_load():
    first = load_config(ExperimentConfig, [], ["inject.langs=[hy]", "base.steps=7"])
    again = load_config(ExperimentConfig, [], [])
    assert first.inject.langs == ["hy"] and first.base.steps == 7
    assert again.inject.langs == ExperimentConfig().inject.langs and again.base.steps == ExperimentConfig().base.steps


def test_cli_small_things_a_user_trips_over(capsys):
    from mlu_dist.cli import main

    assert main(["sweep", "plan", "--cost", str(CONFIG_DIR / "sweeps" / "test.yaml")]) == 0  # flag before the file
    assert "sweep total" in capsys.readouterr().out
    assert main(["unlearn", "--show-fields"]) == 0  # needs no --from
    assert "unlearn.method_args" in capsys.readouterr().out
    assert main(["unlearn", "method=ga"]) == 2
    assert "needs --from" in capsys.readouterr().err


def test_data_translate_loads_its_config_strictly(capsys):
    from mlu_dist.cli.data import main

    assert main(["translate", "src", "--to", "de", "--model", "m", "--out", "o", "num_beam=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'num_beam'" in err and "Did you mean 'num_beams'" in err
    assert main(["translate", "src", "--to", "de,xx", "--model", "m", "--out", "o"]) == 2
    assert "to: unknown language" in capsys.readouterr().err
