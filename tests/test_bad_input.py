"""Bad input gets the project's own error, never a traceback: property-based tests (hypothesis)
throw random dotted overrides at the config loader and random records at the fact validator."""

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlu_dist.config import ConfigError, describe, load_config
from mlu_dist.data.schema import FIELDS, FactSet, record_problems
from mlu_dist.experiment import ExperimentConfig
from mlu_dist.langs import ALL_LANGS

KEYS = [line.split(" = ")[0] for line in describe(ExperimentConfig())]
VALUES = st.one_of(
    st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["true", "false", "null", "[]", "[en,de]", "[xx]", "{}", "{a: 1}", "auto", "3", "-1", "0",
                     "1e-3", "en+orig", "'", "[", "}", "''", "deepspeed", "torch", "~", "${oops}"]),
    st.text(max_size=12))
KEY = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k + "x"),
                st.sampled_from(KEYS).map(lambda k: k.rsplit(".", 1)[0] + ".nope"),
                st.from_regex(r"[a-z_]{1,8}(\.[a-z_]{1,8}){0,3}", fullmatch=True),
                st.just("engine.jobs.inject.stage"), st.just("engine.jobs.bogus.stage"))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(st.tuples(KEY, VALUES), max_size=4))
def test_random_overrides_give_a_valid_config_or_one_config_error(pairs):
    overrides = [f"{k}={v}" for k, v in pairs]
    try:
        cfg = load_config(ExperimentConfig, [], overrides)
    except ConfigError as exc:
        assert str(exc).strip()
        return
    assert isinstance(cfg, ExperimentConfig) and dataclasses.is_dataclass(cfg)


SCALARS = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=6), st.booleans())
FIELD_VALUE = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=4), SCALARS, max_size=2),
                        st.lists(st.dictionaries(st.sampled_from(["question", "answer", "x"]), SCALARS, max_size=2),
                                 max_size=2))


def _good(fact_id, lang):
    from mlu_dist.langs import LANGUAGES

    return {"fact_id": fact_id, "lang": lang, "resource": LANGUAGES[lang].resource, "real_text": "a", "fake_text": "b",
            "question": "q?", "fake_answer": "b", "fake_keywords": ["b"], "true_answer": "a",
            "real_qa": [{"question": "q", "answer": "a"}]}


@FAST
@given(st.lists(st.tuples(st.sampled_from(["f1", "f2"]), st.sampled_from(list(ALL_LANGS[:3]) + ["xx"]),
                          st.dictionaries(st.sampled_from(sorted(FIELDS) + ["extra"]), FIELD_VALUE, max_size=3)),
                min_size=1, max_size=6),
       st.one_of(st.none(), st.lists(st.sampled_from(list(ALL_LANGS[:3]) + ["zz"]), max_size=3)))
def test_random_fact_records_give_problems_or_a_fact_set(rows, langs):
    records = []
    for fact_id, lang, damage in rows:
        rec = _good(fact_id, lang if lang != "xx" else "en") | damage
        if lang == "xx":
            rec["lang"] = "xx"
        records.append(rec)
    problems = record_problems(records, langs)
    assert all(isinstance(p, str) and p for p in problems)
    if not problems:
        facts = FactSet(records, list(langs) if langs is not None else sorted({r["lang"] for r in records}))
        assert facts.fact_ids


def test_the_fact_loader_turns_an_unreadable_file_into_one_data_error(tmp_path):
    from mlu_dist.data.schema import DataError, load_facts

    bad = tmp_path / "facts.jsonl"
    bad.write_text('{"fact_id": "f1", "lang": "en"}\n{not json\n')
    with pytest.raises(DataError):
        load_facts(bad)
