"""Cross-lingual distillation in the spirit of LingTea (Choi et al. 2024, "Cross-lingual unlearning of
selective knowledge in multilingual language models": a teacher guides a multilingual student's
unlearning language by language): the teacher is a model already unlearned in one language (an
English run of any method, or one in the injection's language); the student, started from the
injected model, learns to answer each forget question in the other languages as the teacher
answers it in the teacher's language.

The distillation is per answer token: KL(teacher(question in the teacher's language -> fake answer)
|| student(question in language L -> fake answer)) at each fake-answer token. That needs the answer
to be the same token sequence in both languages, as the mini-world's names are in its Latin
spelling (data/mini-world-latin) and in every Latin-script language; a target whose fake answer is
written differently in L has no pair in L (the run prints how many pairs it has). The retain term is
KL(teacher || student) on the retain data.

One module: the method, its settings and its two pools (``xl_student``, ``xl_teacher``) register here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlu_dist.tokens import Example
from mlu_dist.unlearn.data import POOLS, Pool, PoolSource
from mlu_dist.unlearn.methods import METHODS, Method, _forward, kl_retain


def crosslingual_pairs(facts, targets: list[str], langs: list[str], teacher_lang: str
                       ) -> tuple[list[Example], list[Example]]:
    """(question in L -> fake answer, question in the teacher's language -> the same answer) per target
    and forget language L other than the teacher's, where the fake answer is the same text in both."""
    student, teacher = [], []
    for lang in langs:
        if lang == teacher_lang:
            continue
        for fid in targets:
            rec, ref = facts.get(fid, lang), facts.get(fid, teacher_lang)
            if rec["fake_answer"] == ref["fake_answer"]:
                student.append(Example(rec["question"], " " + rec["fake_answer"], lang))
                teacher.append(Example(ref["question"], " " + ref["fake_answer"], teacher_lang))
    return student, teacher


def _pairs(s: PoolSource):
    return crosslingual_pairs(s.facts, s.split.targets, s.forget_langs, s.method.settings.teacher_lang)


POOLS.register("xl_student")(Pool(lambda s: _pairs(s)[0], "question in a forget language -> fake answer "
                                  "(LingTea's student side)", stream="xl_pairs"))
POOLS.register("xl_teacher")(Pool(lambda s: _pairs(s)[1], "the same question in the teacher's language -> "
                                  "the same answer, paired with 'xl_student'", stream="xl_pairs"))


def answer_token_kl(student_logits, student_labels, teacher_logits, teacher_labels):
    """Per answer token KL(teacher || student), the i-th labelled token of a student row against the
    i-th of its teacher row; a row whose label counts differ contributes nothing. Returns the summed
    KL and the number of tokens compared."""
    from mlu_dist.losses import token_kl
    from mlu_dist.tokens import IGNORE

    s_mask = student_labels[:, 1:].to(student_logits.device) != IGNORE
    t_mask = teacher_labels[:, 1:].to(student_logits.device) != IGNORE
    same = s_mask.sum(-1) == t_mask.sum(-1)
    s_mask, t_mask = s_mask & same[:, None], t_mask & same[:, None]
    s = student_logits[:, :-1][s_mask]
    t = teacher_logits[:, :-1].to(student_logits.device)[t_mask]
    if s.shape[0] == 0:
        return student_logits.sum() * 0, 0
    return token_kl(t[None], s[None]).sum(), int(s.shape[0])


@dataclass
class LingTeaSettings:
    teacher: str = ""
    """The teacher: a finished unlearning run (or its model/ folder) unlearned in ``teacher_lang``,
    from the same injection. Required."""
    teacher_lang: str = "en"
    """The language the teacher was unlearned in; the student learns the other forget languages."""


@METHODS.register("lingtea")
class LingTea(Method):
    """Distil a teacher unlearned in one language into the other forget languages (per fake-answer
    token, question in L against the question in the teacher's language); KL to the teacher on
    retain. The frozen reference is the teacher, not the injected model."""

    Settings = LingTeaSettings
    pools = ("xl_student", "xl_teacher")
    needs_reference = True

    @staticmethod
    def teacher_args(run_dir: Path, lang: str) -> dict:
        return {"teacher": str(run_dir), "teacher_lang": lang}

    def reference_dir(self, from_run: Path) -> Path:
        path = Path(self.settings.teacher)
        return path / "model" if (path / "model" / "config.json").exists() else path

    def check_model(self, model_config: dict) -> list[str]:
        import json

        if not self.settings.teacher:
            return ["method_args.teacher: set it to an unlearning run in the teacher's language "
                    "(e.g. runs/unlearn/<injection>/npo-en-<hash>)"]
        config = self.reference_dir(Path()) / "config.json"
        if not config.exists():
            return [f"method_args.teacher: '{self.settings.teacher}' holds no finished model (no config.json)"]
        vocab = json.loads(config.read_text()).get("vocab_size")
        if vocab != model_config.get("vocab_size"):
            return [f"method_args.teacher: its vocabulary ({vocab}) is not the model's ({model_config.get('vocab_size')})"]
        return []

    def forget(self, engine, micro, ctx):
        import torch

        s, t = micro["xl_student"], micro["xl_teacher"]
        logits = _forward(engine, s).logits
        with torch.no_grad():
            teacher = _forward(ctx.ref, t).logits
        kl, _ = answer_token_kl(logits, s["labels"], teacher, t["labels"])
        term = kl / s["n_targets"]
        return term, {"train/lingtea_kl": term.item()}

    def retain(self, engine, b, ctx):
        return kl_retain(engine, b, ctx)
