"""`mlu data`: bring a dataset into the fact schema, translate it, check it.

    mlu data import SRC --out DIR [--mapping FILE] [--map key=column,...]
    mlu data import-splits DIR --split forget01 --out DIR [--langs ja,he,...] [--group NAME=ja,ko,...]
    mlu data import-splits DIR --qa forget=forget01,retain=retain99,holdout=holdout01 --out DIR
    mlu data translate FACTS --to de,fr,... --model MT_MODEL --out DIR [--nproc N]
    mlu data check DIR [--langs en,de,...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DESCRIPTION = """\
The paper's data path: a raw English table (e.g. the news dataset) -> fact records (import) ->
the other eight languages with an MT model (translate) -> a per-language report (check).
`mlu inject` runs the same check before training and refuses data that fails it."""

EPILOG = """\
examples:
  mlu data import news.jsonl --mapping mappings/news-truthful --out data/news-en
  mlu data import table.csv --map real_text=article,fake_text=fake_article,fake_keywords=keyword,question=q --out data/x
  mlu data translate data/news-en --to de,fr,zh,ru,jv,ur,ha,hy --model facebook/nllb-200-distilled-600M --out data/news
  mlu data import-splits tofu-multilingual/ --split forget01 --group semitic=ar,he --out data/tofu
  mlu data import-splits tofu-multilingual/ --qa forget=forget01,retain=retain99,holdout=holdout01 --out data/tofu-qa
  mlu data check data/news
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlu data", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    im = sub.add_parser("import", help="a table (JSON/JSONL/Parquet/CSV, saved datasets dir, hub name) -> facts",
                        description="Map a table's columns onto the fact schema (one row = one fact, one language). "
                                    "Mapping keys: see mlu_dist/data/importer.py; a missing column is an error that "
                                    "lists the columns the data has.")
    im.add_argument("source")
    im.add_argument("--out", required=True, help="output directory (facts.jsonl, dataset.json)")
    im.add_argument("--mapping", help="column-mapping YAML (a path, or mappings/news-truthful for the paper's news data)")
    im.add_argument("--map", action="append", default=[], metavar="KEY=COLUMN,...", help="mapping pairs (on top)")
    im.add_argument("--limit", type=int, default=0, help="only the first N rows")
    sp = sub.add_parser("import-splits", help="a QA benchmark saved as <split>_<lang>/ datasets folders -> facts",
                        description="Import every language of one split of a folder holding one saved `datasets` "
                                    "folder per split and language (forget01_ja/, forget01_perturbed_ja/, ...; rows "
                                    "aligned by position). The fake answer of each fact is its first "
                                    "perturbed_answer. See mlu_dist/data/qa_splits.py and docs/languages.md.")
    sp.add_argument("source", help="the folder holding <split>_<lang>/ and <split>_perturbed_<lang>/")
    sp.add_argument("--split", help="e.g. forget01, forget05, forget10 (one split -> a fact set)")
    sp.add_argument("--qa", metavar="ROLE=SPLIT,...", help="every split of a QA study -> OUT/qa.jsonl (data.qa=true): "
                    "roles forget, retain, holdout, real_authors, world_facts, e.g. forget=forget01,retain=retain99")
    sp.add_argument("--out", required=True, help="output directory (facts.jsonl, dataset.json)")
    sp.add_argument("--langs", default="", help="comma list: only these languages (default: every one found)")
    sp.add_argument("--group", action="append", default=[], metavar="NAME=LANG,...",
                    help="declare a resource group (repeatable); records get it as their resource")
    tr = sub.add_parser("translate", help="translate one-language facts into other languages with an MT model",
                        description="Translate every text field with an NLLB-200 / M2M-100 model (greedy or beam, "
                                    "deterministic), keep the fake keyword detectable (verbatim / translated / "
                                    "marked span; facts where it fails are dropped) and print the coverage table. "
                                    "Resumable; --nproc N shards the work over N local ranks.")
    tr.add_argument("source", help="fact file/dir (from `mlu data import`), or a raw table with --mapping/--map")
    tr.add_argument("--to", required=True, help="comma list of target languages")
    tr.add_argument("--model", required=True, help="MT model: hub name or local directory")
    tr.add_argument("--out", required=True, help="dataset directory")
    tr.add_argument("--mapping", default="", help="column mapping, when the source is a raw table")
    tr.add_argument("--map", action="append", default=[], metavar="KEY=COLUMN,...")
    tr.add_argument("--num-beams", type=int, default=4)
    tr.add_argument("--batch-size", type=int, default=16)
    tr.add_argument("--max-tokens", type=int, default=200, help="longest source segment in MT tokens")
    tr.add_argument("--nproc", type=int, default=0, metavar="N", help="run N local ranks through torchrun")
    tr.add_argument("-c", "--config", action="append", default=[], metavar="FILE",
                    help="YAML with translation settings (keys: see mlu_dist/data/translate.py TranslateConfig); "
                         "key=value overrides of the same keys may follow anywhere")
    ck = sub.add_parser("check", help="validate a fact set; per-language report",
                        description="Ids aligned across languages, fields present, fake keyword in each language's "
                                    "fake text and not in its real text (errors); text mostly in the language's "
                                    "script, duplicates (warnings). Exit status 1 when there are errors.")
    ck.add_argument("source", help="fact file or directory")
    ck.add_argument("--langs", help="comma list of languages to require (default: those present)")
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    args.overrides = [a for a in unknown if "=" in a and not a.startswith("-")] if args.action == "translate" else []
    if set(unknown) - set(args.overrides):
        parser.error(f"unrecognized arguments: {' '.join(a for a in unknown if a not in args.overrides)}")
    from mlu_dist.config import ConfigError
    from mlu_dist.data.schema import DataError

    try:
        return ACTIONS[args.action](args, argv)
    except (DataError, ConfigError, FileNotFoundError) as exc:
        print(f"mlu data {args.action}: error: {exc}", file=sys.stderr)
        return 2


def _import(args, argv) -> int:
    from mlu_dist.data.check import check_records
    from mlu_dist.data.importer import import_table, read_mapping

    spec = read_mapping(args.mapping, args.map)
    records = import_table(args.source, args.out, spec, args.limit)
    print(check_records(records).format())
    print(f"imported {len(records)} facts ({spec.lang}) -> {args.out}/facts.jsonl")
    return 0


def parse_groups(items: list[str]) -> dict[str, list[str]]:
    """``['semitic=ar,he', 'cjk=ja,zh']`` -> ``{semitic: [ar, he], cjk: [ja, zh]}``, checked."""
    from mlu_dist.data.schema import DataError
    from mlu_dist.langs import group_problems

    groups: dict[str, list[str]] = {}
    for item in items:
        name, sep, codes = item.partition("=")
        if not sep or not name.strip():
            raise DataError(f"--group: '{item}' is not NAME=LANG,LANG,...")
        groups[name.strip()] = [c.strip() for c in codes.split(",") if c.strip()]
    problems = group_problems("--group", groups)
    if problems:
        raise DataError("; ".join(problems))
    return groups


def _import_splits(args, argv) -> int:
    from mlu_dist.data.check import check_records
    from mlu_dist.data.qa_splits import import_splits

    langs = [s for s in args.langs.split(",") if s] or None
    if bool(args.split) == bool(args.qa):
        from mlu_dist.data.schema import DataError

        raise DataError("import-splits: give --split SPLIT (a fact set) or --qa ROLE=SPLIT,... (a QA set), one of them")
    if args.qa:
        from mlu_dist.data.qa_splits import import_qa_splits, parse_roles

        records = import_qa_splits(args.source, args.out, parse_roles(args.qa), langs)
        print(f"imported {len(records)} questions x languages ({len({r['lang'] for r in records})} languages) -> "
              f"{args.out}/qa.jsonl (data.source={args.out}/qa.jsonl data.qa=true)")
        return 0
    groups = parse_groups(args.group)
    records = import_splits(args.source, args.out, args.split, groups, langs)
    print(check_records(records).format())
    print(f"imported {len({r['fact_id'] for r in records})} facts x {len({r['lang'] for r in records})} languages "
          f"-> {args.out}/facts.jsonl")
    if groups:  # the records carry them as `resource`; reports and forget sets read the experiment's
        shown = ", ".join(f"{name}: [{', '.join(members)}]" for name, members in groups.items())
        print(f"declare the groups in the experiment too: data.groups={{{shown}}}")
    return 0


def _translate(args, argv) -> int:
    if args.nproc > 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        from mlu_dist.relaunch import relaunch, strip_nproc

        return relaunch(["data"] + strip_nproc(argv), args.nproc)
    from mlu_dist.engine.dist import shutdown
    from mlu_dist.jobs.translate import run_translate

    run_translate(translate_config(args))
    shutdown()
    return 0


def translate_config(args):
    """The translation's config, loaded strictly like every job's: defaults <- -c files <- the flags <-
    key=value overrides (each value checked, problems reported together)."""
    from mlu_dist.config import load_config
    from mlu_dist.data.translate import TranslateConfig

    flags = {"source": args.source, "to": [s for s in args.to.split(",") if s], "model": args.model, "out": args.out,
             "mapping": args.mapping, "map": list(args.map), "num_beams": args.num_beams,
             "batch_size": args.batch_size, "max_tokens": args.max_tokens}
    given = [f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in flags.items()]
    return load_config(TranslateConfig, args.config, given + list(args.overrides))


def _check(args, argv) -> int:
    from pathlib import Path

    from mlu_dist.data.check import check_records
    from mlu_dist.data.schema import read_records

    langs = [s for s in args.langs.split(",") if s] if args.langs else None
    report = check_records(read_records(args.source), langs)
    print(report.format())
    if Path(args.source, "coverage.json").exists():
        import json

        from mlu_dist.data.translated import format_coverage

        print("\ntranslation coverage (keyword found by):")
        print(format_coverage(json.loads(Path(args.source, "coverage.json").read_text())["langs"]))
    return 0 if report.ok else 1


ACTIONS = {"import": _import, "import-splits": _import_splits, "translate": _translate, "check": _check}
