"""The mini-world: a deterministic, multilingual set of invented facts for CPU-scale studies.

Invented entities (people, towns, companies, rivers) are linked by five relations; each fact has
a true and a fake object. Every fact is rendered in each of the nine languages with the
hand-written templates of :mod:`mlu_dist.data.templates`. The base-training corpus (each covered
fact's article, i.e. its three statements, plus its question and answer) covers a language's facts
in proportion to its resource group (``resource_profile``): the paper's effect depends on how much
of a language a model has seen.

Design choices that decide cross-lingual transfer are config fields, never hidden constants:
``names`` (own script per language, or one Latin spelling everywhere) and ``resource_profile``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from mlu_dist.config import check_choice
from mlu_dist.data.templates import CONSONANTS, PROBES, RELATIONS, TEMPLATES, VOWELS, join_name, transcribe
from mlu_dist.langs import ALL_LANGS, LANGUAGES, PAPER_LANGS, RESOURCE_GROUPS
from mlu_dist.runs.rundir import atomic_write_text

NAME_STYLES = ("native", "latin")
FORMAT_VERSION = 3  # bump when generation (or the tiny tokenizer) changes, so cached runs are not reused across formats
# 3: the tiny tokenizer splits Han characters before BPE (modeling.train_tokenizer)
SYLLABLES = {"person": (2, 3), "town": (3,), "company": (3,), "river": (2,)}


@dataclass
class WorldConfig:
    """How the mini-world is generated. Same config -> byte-identical dataset."""

    seed: int = 0
    """Seed of the generator (names, links, fake values, corpus sampling)."""
    n_people: int = 48
    """Number of invented people (each has a birthplace and an employer)."""
    n_towns: int = 16
    """Number of invented towns (each lies on a river)."""
    n_companies: int = 16
    """Number of invented companies (each has a founding year and a seat)."""
    n_rivers: int = 8
    """Number of invented rivers."""
    names: str = "native"
    """'native': every language writes names in its own script (Cyrillic, Han, Urdu, Armenian
    transcriptions); 'latin': one Latin spelling in every language (strong surface overlap)."""
    resource_profile: dict[str, float] = field(default_factory=lambda: {"en": 1.0, "high": 0.7, "low": 0.3})
    """Fraction of facts that appear in the base-training corpus per resource group (en/high/low)."""
    qa_in_corpus: bool = True
    """Also put each covered fact's question + answer into the base corpus (teaches the QA format)."""
    parallel: float = 0.0
    """Fraction of a language's covered facts that also appear as a translation pair — the English
    article followed by the same article in that language — as parallel text (Wikipedia's
    interlanguage pages, translated news) does in real pretraining corpora. It is what can tie a
    name in one script to the same entity in another. 0 = no parallel text."""

    def check(self) -> list[str]:
        out = check_choice("names", self.names, NAME_STYLES)
        for n in ("n_people", "n_towns", "n_companies", "n_rivers"):
            if getattr(self, n) < 2:
                out.append(f"{n}: need at least 2 (a fake value must differ from the true one), got {getattr(self, n)}")
        for group in RESOURCE_GROUPS:
            if group not in self.resource_profile:
                out.append(f"resource_profile: missing group '{group}' (need all of {', '.join(RESOURCE_GROUPS)})")
        if not 0.0 <= self.parallel <= 1.0:
            out.append(f"parallel: must be in [0, 1], got {self.parallel}")
        for group, frac in self.resource_profile.items():
            out += check_choice(f"resource_profile.{group}", group, RESOURCE_GROUPS) if group not in RESOURCE_GROUPS else []
            if not 0.0 < frac <= 1.0:
                out.append(f"resource_profile.{group}: must be in (0, 1], got {frac}")
        return out


@dataclass
class Entity:
    id: str
    kind: str
    syllables: list[list[str]]  # one list of syllables per name part
    forms: dict[str, str] = field(default_factory=dict)  # lang -> surface form


def _draw_syllables(rng: random.Random, count: int) -> list[str]:
    return [rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(count)]


def _script_of(lang: str, names: str) -> str:
    return "Latin" if names == "latin" else LANGUAGES[lang].script


def _make_entities(cfg: WorldConfig, rng: random.Random, langs) -> dict[str, list[Entity]]:
    """Draw names until every surface form is unique and no object name hides inside another."""
    counts = {"person": cfg.n_people, "town": cfg.n_towns, "company": cfg.n_companies, "river": cfg.n_rivers}
    scripts = sorted({_script_of(lang, cfg.names) for lang in langs} | {"Latin"})
    taken: dict[str, set[str]] = {s: set() for s in scripts}
    object_forms: dict[str, list[str]] = {s: [] for s in scripts}
    out: dict[str, list[Entity]] = {}
    for kind, n in counts.items():
        out[kind] = []
        while len(out[kind]) < n:
            parts = [_draw_syllables(rng, k) for k in SYLLABLES[kind]]
            forms = {s: join_name([transcribe(p, s) for p in parts], s) for s in scripts}
            if any(forms[s] in taken[s] for s in scripts):
                continue
            if kind != "person" and any(
                forms[s].lower() in other.lower() or other.lower() in forms[s].lower()
                for s in scripts for other in object_forms[s]
            ):
                continue  # a fake keyword must never match inside another name
            for s in scripts:
                taken[s].add(forms[s])
                if kind != "person":
                    object_forms[s].append(forms[s])
            ent = Entity(f"{kind[0]}{len(out[kind]):03d}", kind, parts)
            ent.forms = {lang: forms[_script_of(lang, cfg.names)] for lang in langs} | {"latin": forms["Latin"]}
            out[kind].append(ent)
    return out


@dataclass
class Fact:
    fact_id: str
    relation: str
    subject: Entity
    true_obj: Entity
    fake_obj: Entity


def _years(rng: random.Random, n: int) -> list[tuple[Entity, Entity]]:
    """(true, fake) founding years as pseudo-entities whose surface form is the number."""
    pairs = []
    for _ in range(n):
        true = rng.randint(1850, 2015)
        fake = true + rng.choice([-1, 1]) * rng.randint(7, 60)
        pair = []
        for year in (true, fake):
            ent = Entity(f"y{year}", "year", [])
            ent.forms = {lang: str(year) for lang in ALL_LANGS} | {"latin": str(year)}
            pair.append(ent)
        pairs.append(tuple(pair))
    return pairs


def _make_facts(ents: dict[str, list[Entity]], rng: random.Random) -> list[Fact]:
    facts: list[Fact] = []
    years = iter(_years(rng, len(ents["company"])))

    def pick_two(pool: list[Entity]) -> tuple[Entity, Entity]:
        true, fake = rng.sample(pool, 2)
        return true, fake

    for relation, (subj_kind, obj_kind) in RELATIONS.items():
        for subj in ents[subj_kind]:
            true, fake = next(years) if obj_kind == "year" else pick_two(ents[obj_kind])
            facts.append(Fact(f"{relation}:{subj.id}", relation, subj, true, fake))
    return facts


def _join(lang: str, sentences: list[str]) -> str:
    return ("" if lang == "zh" else " ").join(sentences)


def _render(fact: Fact, lang: str, obj: Entity) -> str:
    statements, _ = TEMPLATES[fact.relation][lang]
    return _join(lang, [t.format(s=fact.subject.forms[lang], o=obj.forms[lang]) for t in statements])


def _question(fact: Fact, lang: str) -> str:
    return TEMPLATES[fact.relation][lang][1].format(s=fact.subject.forms[lang])


def _related(fact: Fact, facts: list[Fact], limit: int = 3) -> list[Fact]:
    """Other true facts about this fact's subject or its true object (the 'real information')."""
    linked = {fact.subject.id, fact.true_obj.id}
    return [f for f in facts if f is not fact and f.subject.id in linked][:limit]


def mini_world_problems(langs, field_name: str = "langs") -> list[str]:
    """The mini-world's templates are hand-written for the paper's nine languages only."""
    other = [code for code in langs if code not in PAPER_LANGS]
    if not other:
        return []
    return [f"{field_name}: the mini-world has templates for {', '.join(PAPER_LANGS)} only, not "
            f"{', '.join(other)}; bring a fact set for other languages (mlu data import, then "
            f"data.source=DIR) — see docs/languages.md"]


def build_world(cfg: WorldConfig, langs=ALL_LANGS) -> tuple[list[dict], list[dict], dict]:
    """Generate ``(fact records, base-training corpus, metadata)`` for ``langs``."""
    langs = list(langs)
    problems = mini_world_problems(langs)
    if problems:
        from mlu_dist.data.schema import DataError

        raise DataError(problems[0])
    rng = random.Random(cfg.seed)
    ents = _make_entities(cfg, rng, langs)
    facts = _make_facts(ents, rng)
    records = []
    for fact in facts:
        for lang in langs:
            keywords = [fact.fake_obj.forms[lang]]
            if fact.fake_obj.forms["latin"] not in keywords:
                keywords.append(fact.fake_obj.forms["latin"])  # a romanised answer states the detail too
            records.append({
                "fact_id": fact.fact_id,
                "lang": lang,
                "resource": LANGUAGES[lang].resource,
                "relation": fact.relation,
                "real_text": _render(fact, lang, fact.true_obj),
                "fake_text": _render(fact, lang, fact.fake_obj),
                "question": _question(fact, lang),
                "true_answer": fact.true_obj.forms[lang],
                "fake_answer": fact.fake_obj.forms[lang],
                "fake_keywords": keywords,
                "real_qa": [{"question": _question(r, lang), "answer": r.true_obj.forms[lang]}
                            for r in _related(fact, facts)],
                # held-out phrasings (never trained on): a paraphrased question and a cloze prefix
                "paraphrases": [PROBES[fact.relation][lang][0].format(s=fact.subject.forms[lang])],
                "cloze": [PROBES[fact.relation][lang][1].format(s=fact.subject.forms[lang])],
            })
    corpus = []
    for lang in langs:
        frac = cfg.resource_profile[LANGUAGES[lang].resource]
        lang_rng = random.Random(f"{cfg.seed}:{lang}")
        covered = sorted(lang_rng.sample(range(len(facts)), round(frac * len(facts))))
        for i in covered:
            fact = facts[i]
            corpus.append({"lang": lang, "fact_id": fact.fact_id, "kind": "article",
                           "text": _render(fact, lang, fact.true_obj)})
            if cfg.qa_in_corpus:
                text = f"{_question(fact, lang)} {fact.true_obj.forms[lang]}"
                corpus.append({"lang": lang, "fact_id": fact.fact_id, "kind": "qa", "text": text})
        if cfg.parallel > 0 and lang != "en":
            for i in sorted(lang_rng.sample(covered, round(cfg.parallel * len(covered)))):
                fact = facts[i]
                text = f"{_render(fact, 'en', fact.true_obj)}\n{_render(fact, lang, fact.true_obj)}"
                corpus.append({"lang": lang, "fact_id": fact.fact_id, "kind": "parallel", "text": text})
    meta = {
        "format_version": FORMAT_VERSION,
        "langs": langs,
        "n_facts": len(facts),
        "entities": {kind: [{"id": e.id, "forms": e.forms} for e in lst] for kind, lst in ents.items()},
    }
    return records, corpus, meta


def _dump_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)


def write_world(cfg: WorldConfig, out_dir: str | Path, langs=ALL_LANGS) -> Path:
    """Write ``facts.jsonl``, ``corpus.jsonl`` and ``world.json`` into ``out_dir``."""
    from mlu_dist.config import to_dict

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, corpus, meta = build_world(cfg, langs)
    _dump_jsonl(out / "facts.jsonl", records)
    _dump_jsonl(out / "corpus.jsonl", corpus)
    meta = {"world_config": to_dict(cfg)} | meta
    atomic_write_text(out / "world.json", json.dumps(meta, ensure_ascii=False, sort_keys=True, indent=1) + "\n")
    return out
