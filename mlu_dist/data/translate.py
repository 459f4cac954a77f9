"""Translating a fact set into the other languages with an MT model, keeping the fake keyword.

Every text field is translated: articles (split into sentences so none exceeds the MT model's
length), the probe question, answers, keywords and the real QA pairs. Distinct source segments
of one target language are translated once, sharded over ranks (segment ``i`` on rank
``i % world``), and appended to a per-rank cache as each batch finishes, so a killed translation
resumes where it stopped, with any number of ranks.

**The fake keyword must survive**, or fake_rate could never see the fake detail. Per fact and
language the keyword is found by the first strategy that works, and recorded in the record's
``keyword_source``:

1. ``verbatim``   the source keyword itself occurs in the translated fake article (names, numbers);
2. ``translated`` the keyword's own translation occurs in it;
3. ``marked``     the article sentence holding the keyword is translated again with the keyword in
                  [brackets]; the bracketed span of the output is the keyword, and that sentence
                  (brackets removed) replaces the first translation's, so the article has it;
4. ``failed``     none did: the fact is dropped (from every language: each fact needs all of them).

A keyword that also occurs in the translated *real* article fails too (truth would count as
fake). Matching is the evaluation's (NFKC, casefold, whole word).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from mlu_dist.data.errors import DataError
from mlu_dist.eval.matching import contains_keyword, normalize
from mlu_dist.langs import ALL_LANGS, LanguageError, canonical, resource_of, writes_without_spaces
from mlu_dist.logs import quiet

STRATEGIES = ("verbatim", "translated", "marked", "failed")
SENTENCE_END = re.compile(r"(?<=[.!?。！？؟։])\s+|(?<=[。！？])")
ABBREVIATION = re.compile(r"(?:^|\s)(?:[A-Z]|(?:[A-Za-z]\.)+[A-Za-z]|Dr|Mr|Mrs|Ms|Prof|St|Mt|Jr|Sr|No|vs|etc|approx|"
                          r"Gen|Col|Lt|Sgt|Gov|Sen|Rep|Inc|Ltd|Co|Corp|Jan|Feb|Mar|Apr|Aug|Sept?|Oct|Nov|Dec)\.$")
"""A piece ending like this ("Dr.", "U.S.", "J.") does not end a sentence."""


def sentences(line: str) -> list[str]:
    """The sentences of one line (abbreviations and initials do not end one)."""
    out: list[str] = []
    for piece in [p for p in SENTENCE_END.split(line.strip()) if p.strip()]:
        if out and ABBREVIATION.search(out[-1]):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


class TranslateError(DataError):
    """The translation cannot run as asked (a language the MT model lacks, a bad source)."""


class Translator(Protocol):
    """What the translation needs of an MT system (a real model, or a scripted one in tests)."""

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]: ...

    def n_tokens(self, text: str) -> int: ...

    max_tokens: int


class HFTranslator:
    """An NLLB-200 or M2M-100 family model through ``transformers``: greedy or beam search, no sampling."""

    def __init__(self, name_or_path: str, device: str = "cpu", num_beams: int = 4, batch_size: int = 16,
                 max_tokens: int = 200, seed: int = 0):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        try:
            self.tok = AutoTokenizer.from_pretrained(name_or_path)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path, dtype=dtype).to(device).eval()
        except (OSError, ValueError, ImportError) as exc:
            raise TranslateError(f"model: could not load the MT model '{name_or_path}': {str(exc).splitlines()[0][:300]} "
                                 f"(compute nodes usually have no internet: give a local directory; M2M-100's "
                                 f"tokenizer needs `pip install sentencepiece`)") from None
        self.device, self.num_beams, self.batch_size, self.seed = device, num_beams, batch_size, seed
        self.limit = (getattr(self.model.config, "max_position_embeddings", 1024) or 1024) - 4
        self.max_tokens = min(max_tokens, self.limit)
        from mlu_dist.data.mt_codes import NLLB_TOKEN, language_tokens

        self.tokens = language_tokens(self.tok.get_vocab())
        self.family = "nllb" if any(NLLB_TOKEN.match(t) for t in self.tokens) else "m2m100"
        self.name = name_or_path
        torch.manual_seed(seed)

    def _token_id(self, token: str) -> int | None:
        """The id of a language token, None if the tokenizer lacks it (maps it to <unk>)."""
        tid = self.tok.convert_tokens_to_ids(token)
        return None if tid is None or tid == self.tok.unk_token_id else tid

    def lang_id(self, lang: str) -> int:
        from mlu_dist.data.mt_codes import mt_codes

        try:
            token = mt_codes([lang], self.tokens, f"the MT model '{self.name}' ({self.family})")[lang]
        except LanguageError as exc:
            raise TranslateError(str(exc)) from None
        return self._token_id(token)

    def check_langs(self, langs: list[str]) -> None:
        for lang in langs:
            self.lang_id(lang)

    def n_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        import torch

        src_id, tgt_id = self.lang_id(src), self.lang_id(tgt)
        eos = self.tok.eos_token_id
        rows = [[src_id] + self.tok(t, add_special_tokens=False)["input_ids"][:self.max_tokens] + [eos] for t in texts]
        out: list[str] = []
        for start in range(0, len(rows), self.batch_size):
            batch = self.tok.pad({"input_ids": rows[start:start + self.batch_size]}, padding=True, return_tensors="pt")
            longest = batch["input_ids"].shape[1]
            with torch.no_grad():
                gen = self.model.generate(**{k: v.to(self.device) for k, v in batch.items()},
                                          forced_bos_token_id=tgt_id, num_beams=self.num_beams, do_sample=False,
                                          max_new_tokens=min(self.limit, 3 * longest + 16))
            out += [t.strip() for t in self.tok.batch_decode(gen, skip_special_tokens=True)]
        return out


# --- segments -----------------------------------------------------------------------------------
def split_text(text: str, n_tokens: Callable[[str], int], max_tokens: int) -> list[list[str]]:
    """Lines of sentences; a sentence longer than ``max_tokens`` is cut at word boundaries."""
    lines = []
    for line in text.split("\n"):
        pieces = []
        for sentence in sentences(line):
            if n_tokens(sentence) <= max_tokens:
                pieces.append(sentence)
                continue
            chunk: list[str] = []
            for word in sentence.split(" "):
                if chunk and n_tokens(" ".join(chunk + [word])) > max_tokens:
                    pieces.append(" ".join(chunk))
                    chunk = []
                chunk.append(word)
            if chunk:
                pieces.append(" ".join(chunk))
        lines.append(pieces)
    return lines


def join_text(lines: list[list[str]], lang: str) -> str:
    sep = "" if writes_without_spaces(lang) else " "
    return "\n".join(sep.join(p.strip() for p in pieces) for pieces in lines)


def fields_of(rec: dict, n_tokens, max_tokens: int) -> dict[str, list[list[str]]]:
    """Every translatable field of a record as lines of segments, keyed by field path."""
    out = {"real_text": split_text(rec["real_text"], n_tokens, max_tokens),
           "fake_text": split_text(rec["fake_text"], n_tokens, max_tokens),
           "question": [[rec["question"]]], "fake_answer": [[rec["fake_answer"]]]}
    if rec.get("true_answer"):
        out["true_answer"] = [[rec["true_answer"]]]
    for i, kw in enumerate(rec["fake_keywords"]):
        out[f"kw/{i}"] = [[kw]]
    for i, qa in enumerate(rec["real_qa"]):
        out[f"qa/{i}/question"] = [[qa["question"]]]
        out[f"qa/{i}/answer"] = [[qa["answer"]]]
    for name in ("paraphrases", "cloze"):
        for i, text in enumerate(rec.get(name) or []):
            out[f"{name}/{i}"] = [[text]]
    return out


def mark(sentence: str, keyword: str) -> str | None:
    """``sentence`` with the first whole-word occurrence of ``keyword`` in [brackets] (None if absent)."""
    sentence = sentence.replace("[", "(").replace("]", ")")  # the only brackets are ours
    for m in re.finditer(re.escape(keyword), sentence, re.IGNORECASE):
        # whole word, by the evaluation's matcher, on this occurrence and its neighbours only
        if contains_keyword(sentence[max(0, m.start() - 1):m.end() + 1], [keyword]):
            return f"{sentence[:m.start()]}[{m.group(0)}]{sentence[m.end():]}"
    return None


BRACKETS = str.maketrans({"【": "[", "】": "]", "［": "[", "］": "]", "〔": "[", "〕": "]"})


def unmark(output: str) -> tuple[str, str] | None:
    """``(span, text without the brackets)`` of a marked translation with exactly one bracketed span
    (full-width and CJK brackets count as brackets)."""
    output = output.translate(BRACKETS)
    spans = re.findall(r"\[([^\[\]]+)\]", output)
    if len(spans) != 1 or not spans[0].strip():
        return None
    return spans[0].strip(), re.sub(r"\[\s*([^\[\]]+?)\s*\]", r"\1", output).strip()


# --- one language -------------------------------------------------------------------------------
class SegmentCache:
    """Translated segments of one target language: ``<dir>/cache.rank<k>.jsonl`` files, one per
    rank that wrote, read back whatever the number of ranks of an earlier attempt."""

    def __init__(self, part_dir: Path, rank: int):
        self.dir, self.rank = Path(part_dir), rank
        self.dir.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, str] = {}
        self.reload()

    def reload(self) -> None:
        for path in sorted(self.dir.glob("cache.rank*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: that batch is redone
                    continue
                self.done[row["src"]] = row["out"]

    def add(self, sources: list[str], outputs: list[str]) -> None:
        path = self.dir / f"cache.rank{self.rank}.jsonl"
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as fh:  # a line cut by a kill stays its own (skipped) line
                fh.seek(-1, 2)
                torn = fh.read(1) != b"\n"
            if torn:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write("\n")
        with open(path, "a", encoding="utf-8") as fh:
            for s, o in zip(sources, outputs):
                fh.write(json.dumps({"src": s, "out": o}, ensure_ascii=False) + "\n")
            fh.flush()
        self.done.update(zip(sources, outputs))


def translate_segments(texts: list[str], src: str, tgt: str, translator: Translator, cache: SegmentCache,
                       rank: int, world: int, barrier: Callable[[], None], progress: bool = False) -> dict[str, str]:
    """Translations of every distinct text; this rank does its share of the ones not cached yet.

    The distinct texts are sorted and cut into fixed batches *before* anything is skipped or
    shared out (batch ``i`` on rank ``i % world``): what a batch holds never depends on the number
    of ranks or on an earlier interrupted attempt, so neither changes a translation."""
    ordered = sorted(set(texts), key=lambda t: (len(t), t))
    size = getattr(translator, "batch_size", 32)
    batches = [ordered[i:i + size] for i in range(0, len(ordered), size)]
    mine = [b for b in batches[rank::world] if any(t not in cache.done for t in b)]
    bar = None
    if progress and mine:
        from tqdm import tqdm

        bar = tqdm(total=sum(map(len, mine)), desc=f"translate {src}->{tgt}", unit="seg", disable=rank != 0 or quiet())
    for batch in mine:
        cache.add(batch, translator.translate(batch, src, tgt))
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    barrier()
    cache.reload()
    return cache.done


def _keyword(rec: dict, out: dict, lang: str) -> tuple[str, list[str]] | None:
    """(strategy, keywords) by the strategies 1-2 of the module doc; None if both fail."""
    fake, real = out["fake_text"], out["real_text"]
    for strategy, candidates in (("verbatim", rec["fake_keywords"]),
                                 ("translated", [out[f"kw/{i}"] for i in range(len(rec["fake_keywords"]))])):
        kept = [k for k in candidates if k.strip() and contains_keyword(fake, [k]) and not contains_keyword(real, [k])]
        if kept:
            return strategy, kept
    return None


def translate_language(records: list[dict], lang: str, translator: Translator, part_dir: Path, rank: int = 0,
                       world: int = 1, barrier: Callable[[], None] = lambda: None,
                       progress: bool = False) -> tuple[list[dict], dict]:
    """Translate the source-language ``records`` into ``lang``: ``(records in lang, coverage row)``.

    Every rank must call it (the barrier joins them); every rank returns the same result."""
    try:
        if canonical(lang) != lang:
            raise TranslateError(f"target language '{lang}': write '{canonical(lang)}'")
    except LanguageError as exc:
        raise TranslateError(f"target language: {exc}") from None
    src = records[0]["lang"]
    cache = SegmentCache(part_dir, rank)
    fields = {r["fact_id"]: fields_of(r, translator.n_tokens, translator.max_tokens) for r in records}
    texts = [seg for f in fields.values() for lines in f.values() for pieces in lines for seg in pieces]
    done = translate_segments(texts, src, lang, translator, cache, rank, world, barrier, progress=progress)
    outs = {fid: {k: join_text([[done[s] for s in pieces] for pieces in lines], lang) for k, lines in f.items()}
            for fid, f in fields.items()}
    found = {r["fact_id"]: _keyword(r, outs[r["fact_id"]], lang) for r in records}
    # strategy 3: the keyword's sentence again, with the keyword marked
    marked: dict[str, tuple[int, int, str]] = {}  # fact -> (line, piece, marked source)
    for r in records:
        if found[r["fact_id"]] is None:
            hits = ((li, pi, m) for kw in r["fake_keywords"]
                    for li, pieces in enumerate(fields[r["fact_id"]]["fake_text"])
                    for pi, p in enumerate(pieces) for m in [mark(p, kw)] if m)
            hit = next(hits, None)  # the first keyword found, in its first sentence
            if hit:
                marked[r["fact_id"]] = hit
    if marked:
        done = translate_segments([m for _, _, m in marked.values()], src, lang, translator, cache, rank, world,
                                  barrier)
    for fid, (li, pi, m) in marked.items():
        got = unmark(done[m])
        if got is None:
            continue
        span, sentence = got
        lines = [[done[s] for s in pieces] for pieces in fields[fid]["fake_text"]]
        lines[li][pi] = sentence
        fake = join_text(lines, lang)
        if contains_keyword(fake, [span]) and not contains_keyword(outs[fid]["real_text"], [span]):
            outs[fid]["fake_text"] = fake
            found[fid] = ("marked", [span])
    return _records(records, outs, found, lang)


def _records(records: list[dict], outs: dict, found: dict, lang: str) -> tuple[list[dict], dict]:
    result, row = [], {s: 0 for s in STRATEGIES} | {"facts": len(records), "failed_ids": []}
    for r in records:
        fid, out = r["fact_id"], outs[r["fact_id"]]
        strategy, keywords = found[fid] or ("failed", [])
        if not (out["question"].strip() and out["fake_answer"].strip()):
            strategy = "failed"  # an empty translation of the probe question or answer: unusable
        row[strategy] += 1
        if strategy == "failed":
            row["failed_ids"].append(fid)
        # a fake answer that was the keyword is the keyword found in this language
        same = normalize(r["fake_answer"]) in {normalize(k) for k in r["fake_keywords"]}
        result.append({
            "fact_id": fid, "lang": lang, "resource": resource_of(lang), "real_text": out["real_text"],
            "fake_text": out["fake_text"], "question": out["question"],
            "true_answer": out.get("true_answer", ""),
            "fake_answer": keywords[0] if same and keywords else out["fake_answer"],
            "fake_keywords": keywords,
            "real_qa": [{"question": out[f"qa/{i}/question"], "answer": out[f"qa/{i}/answer"]}
                        for i in range(len(r["real_qa"]))
                        if out[f"qa/{i}/question"].strip() and out[f"qa/{i}/answer"].strip()],  # empty: dropped
            "keyword_source": strategy,
            **{name: [out[f"{name}/{i}"] for i in range(len(r[name])) if out[f"{name}/{i}"].strip()]
               for name in ("paraphrases", "cloze") if r.get(name)},
        })
    row["usable"] = row["facts"] - row["failed"]
    return result, row


# --- configuration ------------------------------------------------------------------------------
@dataclass
class TranslateConfig:
    """A translation of a one-language fact set (or a raw table, imported first) into other languages."""

    source: str = ""
    """The source facts (a fact file or directory, e.g. from `mlu data import`), or with ``mapping`` /
    ``map`` a raw table (JSON/JSONL/Parquet/CSV, saved datasets dir or hub name) imported first."""
    to: list[str] = field(default_factory=lambda: [c for c in ALL_LANGS if c != "en"])
    """Languages this run translates into."""
    langs: list[str] = field(default_factory=list)
    """Every target language of the dataset (empty = ``to``); a sweep translates them one per task,
    and the dataset is assembled when all are done."""
    model: str = ""
    """MT model: a hub name or local directory of the NLLB-200 or M2M-100 family."""
    out: str = ""
    """Dataset directory: source.jsonl, parts/<lang>/, then facts.jsonl and coverage.json."""
    mapping: str = ""
    """Column-mapping YAML for a raw ``source`` (see data/importer.py)."""
    map: list[str] = field(default_factory=list)
    """key=column pairs on top of ``mapping``."""
    num_beams: int = 4
    """Beam width (1 = greedy). Decoding never samples: translations are deterministic."""
    batch_size: int = 16
    """Segments per generate call."""
    max_tokens: int = 200
    """Longest source segment in MT tokens: longer sentences are cut at word boundaries."""
    seed: int = 0
    """Torch seed set before translating (decoding is deterministic anyway)."""

    def check(self) -> list[str]:
        """Field problems; ``to`` and ``out`` may be empty here (a sweep fills them per task)."""
        from mlu_dist.langs import check_langs

        if not self.source:  # unused (a sweep without a translate stage)
            return []
        out = check_langs("to", self.to, allow_empty=True) + check_langs("langs", self.langs, allow_empty=True)
        out += [f"to: '{lang}' is not in langs ({', '.join(self.langs)})" for lang in self.to
                if self.langs and lang not in self.langs]
        if not self.model:
            out.append("model: required (an NLLB-200 / M2M-100 model: hub name or local directory)")
        if self.num_beams < 1 or self.batch_size < 1 or self.max_tokens < 8:
            out.append("num_beams and batch_size must be >= 1, max_tokens >= 8")
        return out

    def problems(self) -> list[str]:
        """Everything a translation run needs."""
        out = self.check() + [f"{name}: required" for name in ("source", "to", "out") if not getattr(self, name)]
        return out
