import json

import pytest

from mlu_dist.data.schema import DataError, load_facts
from mlu_dist.data.world import WorldConfig, write_world


@pytest.fixture()
def rows(tmp_path):
    out = write_world(WorldConfig(n_people=3, n_towns=3, n_companies=2, n_rivers=2), tmp_path / "w")
    return [json.loads(line) for line in (out / "facts.jsonl").read_text().splitlines()]


def _write(tmp_path, rows):
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_every_problem_is_reported_at_once(tmp_path, rows):
    del rows[0]["question"]
    rows[1]["fake_keywords"] = []
    rows[2]["lang"] = "xx"  # (tlh, Klingon, is a valid ISO 639-3 code)
    with pytest.raises(DataError) as err:
        load_facts(_write(tmp_path, rows))
    msg = str(err.value)
    assert "missing field(s) question" in msg
    assert "fake_keywords is empty" in msg
    assert "unknown language code(s) xx" in msg
    assert "have no record in" in msg  # the fact whose record went missing


def test_ids_that_do_not_line_up_across_languages(tmp_path, rows):
    rows = [r for r in rows if not (r["lang"] == "ur" and r["fact_id"].startswith("born_in"))]
    with pytest.raises(DataError, match=r"fact\(s\) have no record in 'ur'"):
        load_facts(_write(tmp_path, rows))


def test_language_subset_and_unknown_language(tmp_path, rows):
    path = _write(tmp_path, rows)
    assert load_facts(path, ["en", "zh"]).langs == ["en", "zh"]
    with pytest.raises(DataError, match="unknown language"):
        load_facts(path, ["en", "xx"])


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_facts(tmp_path / "nope.jsonl")
