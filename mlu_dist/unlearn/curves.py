"""Per-language forgetting curves: rows of (step, lang, metric, value) in curves.jsonl, and a plot."""

from __future__ import annotations

from pathlib import Path

from mlu_dist.langs import lang_colour, lang_index
from mlu_dist.runs.rundir import atomic_path
from mlu_dist.tracking import append_jsonl, keep_rows, read_jsonl

GROUP_COLOURS = {"en": "black", "high": "tab:blue", "low": "tab:orange"}


def curve_table(values: dict[str, dict[str, dict[str, float]]], langs: list[str]):
    """``({curve: {lang: value}}, [(curve, axis), ...])``: per language, the mean over facts of every
    computed value that a registered metric draws on the curves (transformed, e.g. NLL -> ppl)."""
    from mlu_dist.eval.metrics import all_values

    table, keys = {}, []
    for v in all_values():
        if v.curve and v.name in values:
            by_lang = values[v.name]
            means = {lang: sum(by_lang[lang].values()) / max(1, len(by_lang[lang])) for lang in langs}
            table[v.curve] = {lang: v.transform(m) if v.transform else m for lang, m in means.items()}
            keys.append((v.curve, v.curve_axis))
    return table, keys


class CurveWriter:
    def __init__(self, run_dir: Path, start_step: int = 0):
        self.path = Path(run_dir) / "curves.jsonl"
        # a resumed run drops the steps after its checkpoint (temp file + rename, torn lines repaired)
        keep_rows(self.path, lambda row: bool(start_step) and row["step"] <= start_step)

    def write(self, step: int, values: dict[str, dict[str, float]]) -> None:
        """``values``: metric -> lang -> value."""
        append_jsonl(self.path, [{"step": step, "lang": lang, "metric": metric, "value": value}
                                 for metric, by_lang in values.items() for lang, value in by_lang.items()])


def plot_curves(run_dir: Path, metrics=None, title: str = "", forget_langs=(), out: Path | None = None,
                xlabel: str = "unlearning step") -> Path:
    """One panel per curve (default: every bounded 0-1 curve of the registered metrics, e.g.
    fake_rate and fake_pref), one line per language (colour = resource group; forget languages
    solid, the others dashed)."""
    from mlu_dist.eval.metrics import all_values

    metrics = metrics or [v.curve for v in all_values() if v.curve and v.bounded]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(Path(run_dir) / "curves.jsonl")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        langs = sorted({r["lang"] for r in rows if r["metric"] == metric}, key=lambda x: (lang_index(x), x))
        for lang in langs:
            pts = sorted((r["step"], r["value"]) for r in rows if r["metric"] == metric and r["lang"] == lang)
            style = "-" if lang in forget_langs else "--"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", ms=3,
                    color=lang_colour(lang), alpha=0.85, label=lang)
            if pts:
                ax.annotate(lang, pts[-1], fontsize=7, xytext=(3, 0), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7, ncol=3, title="solid = forget langs", title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = out or Path(run_dir) / "curves.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return out
