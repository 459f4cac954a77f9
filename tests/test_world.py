import collections
import json

from mlu_dist.data.schema import FIELDS, load_facts
from mlu_dist.data.world import WorldConfig, build_world, write_world
from mlu_dist.langs import ALL_LANGS, LANGUAGES, script_share


def test_same_seed_gives_byte_identical_files(tmp_path):
    a, b = write_world(WorldConfig(seed=3), tmp_path / "a"), write_world(WorldConfig(seed=3), tmp_path / "b")
    for name in ("facts.jsonl", "corpus.jsonl", "world.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    c = write_world(WorldConfig(seed=4), tmp_path / "c")
    assert (c / "facts.jsonl").read_bytes() != (a / "facts.jsonl").read_bytes()


def test_every_fact_in_every_language_with_every_field():
    records, _, meta = build_world(WorldConfig())
    by_fact = collections.defaultdict(set)
    for r in records:
        assert set(FIELDS) <= set(r)
        by_fact[r["fact_id"]].add(r["lang"])
    assert len(by_fact) == meta["n_facts"] == 48 * 2 + 16 * 2 + 16
    assert all(langs == set(ALL_LANGS) for langs in by_fact.values())


def test_text_is_in_each_languages_script():
    records, corpus, _ = build_world(WorldConfig())
    for r in records:
        script = LANGUAGES[r["lang"]].script
        for key in ("real_text", "fake_text", "question"):
            assert script_share(r[key], script) > 0.95, (r["lang"], key, r[key])
        assert script_share(r["true_answer"], script) == 1.0
    for row in corpus:
        assert script_share(row["text"], LANGUAGES[row["lang"]].script) > 0.95


def test_latin_names_keep_one_spelling_everywhere():
    records, _, _ = build_world(WorldConfig(names="latin"))
    answers = collections.defaultdict(set)
    for r in records:
        answers[r["fact_id"]].add(r["true_answer"])
    assert all(len(forms) == 1 for forms in answers.values())


def test_fake_keywords_never_appear_in_the_true_text():
    records, _, _ = build_world(WorldConfig())
    for r in records:
        assert r["fake_answer"] != r["true_answer"]
        assert r["fake_answer"] in r["fake_keywords"]
        for kw in r["fake_keywords"]:
            assert kw.lower() not in r["real_text"].lower(), (r["fact_id"], r["lang"], kw)
            assert kw.lower() in r["fake_text"].lower() or kw != r["fake_answer"]


def test_corpus_sizes_follow_the_resource_profile():
    cfg = WorldConfig(resource_profile={"en": 1.0, "high": 0.5, "low": 0.25})
    records, corpus, meta = build_world(cfg)
    n = meta["n_facts"]
    counts = collections.Counter(row["lang"] for row in corpus)
    for lang in ALL_LANGS:
        frac = cfg.resource_profile[LANGUAGES[lang].resource]
        assert counts[lang] == round(frac * n) * 2, lang  # article + question/answer per covered fact
    assert counts["en"] > counts["de"] > counts["hy"]


def test_parallel_text_pairs_the_english_article_with_its_translation():
    plain_records, plain_corpus, _ = build_world(WorldConfig())
    records, corpus, meta = build_world(WorldConfig(parallel=0.5))
    assert records == plain_records  # the facts do not change, only the corpus grows
    pairs = [row for row in corpus if row["kind"] == "parallel"]
    assert [row for row in corpus if row["kind"] != "parallel"] == plain_corpus
    by_key = {(r["fact_id"], r["lang"]): r for r in records}
    covered = collections.Counter(row["lang"] for row in plain_corpus if row["kind"] == "article")
    for lang in ALL_LANGS:
        mine = [row for row in pairs if row["lang"] == lang]
        assert len(mine) == (0 if lang == "en" else round(0.5 * covered[lang])), lang
        for row in mine:  # the pair is exactly: English true article, newline, the same in `lang`
            en_text, text = row["text"].split("\n")
            assert en_text == by_key[(row["fact_id"], "en")]["real_text"]
            assert text == by_key[(row["fact_id"], lang)]["real_text"]
    assert "parallel: must be in [0, 1]" in " ".join(WorldConfig(parallel=1.5).check())


def test_written_world_loads_through_datasets(tmp_path):
    out = write_world(WorldConfig(n_people=4, n_towns=3, n_companies=3, n_rivers=2), tmp_path / "w", ["en", "de", "hy"])
    facts = load_facts(out)
    assert facts.langs == ["en", "de", "hy"]
    assert len(facts.records) == 3 * len(facts.fact_ids)
    meta = json.loads((out / "world.json").read_text())
    assert meta["world_config"]["n_people"] == 4


def test_held_out_phrasings_are_never_trained_on():
    """Paraphrased questions and cloze prefixes appear in no text any job trains on: the base corpus,
    the injection's fake and safe data, unlearning's forget, retain and refusal data."""
    from mlu_dist.data.schema import FactSet
    from mlu_dist.data.splits import split_facts
    from mlu_dist.inject.config import InjectConfig
    from mlu_dist.inject.data import injection_pools
    from mlu_dist.unlearn.data import alternate_pairs, forget_examples, refusal_pairs, retain_examples

    for names in ("native", "latin"):
        records, corpus, _ = build_world(WorldConfig(names=names))
        facts = FactSet(records, list(ALL_LANGS))
        split = split_facts(facts.fact_ids, 24, 24, 0)
        examples = [ex for lang in ALL_LANGS
                    for pool in injection_pools(facts, split, InjectConfig(langs=[lang], safe_data="all")).values()
                    for ex in pool]
        for scope in ("all", "answer", "qa"):
            examples += forget_examples(facts, split, ALL_LANGS, scope=scope)
        examples += retain_examples(facts, split, ALL_LANGS) + sum(refusal_pairs(facts, split, ALL_LANGS), [])
        examples += sum(alternate_pairs(facts, split, ALL_LANGS, per_target=5), [])
        trained = {row["text"] for row in corpus} | {ex.prompt + " " + ex.completion for ex in examples}
        text = "\n".join(sorted(trained))
        assert all(r["question"] in text for r in records if r["fact_id"] in split.targets)  # the trained phrasing is
        held_out = {p for r in records for p in r["paraphrases"] + r["cloze"]}
        assert len(held_out) >= len(records)  # one of each per record at least
        seen = sorted(p for p in held_out if p in text)
        assert not seen, seen[:5]
        # each is in its record's language and names the record's subject
        for r in records:
            assert len(r["paraphrases"]) >= 1 and len(r["cloze"]) >= 1
            assert all(p != r["question"] for p in r["paraphrases"])
