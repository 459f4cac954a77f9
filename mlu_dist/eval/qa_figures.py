"""The two figures a reviewer expects beside the per-language TOFU table: membership-inference AUC
as a heatmap (forget setting x probe language) and the forget-quality vs model-utility trade-off
per language (one point per method x setting x seed, the reference models marked).

Both read plain data (SUMMARY.json's ``metrics`` or :func:`mlu_dist.eval.qa.tofu_table` rows), never
another figure or a report's text.
"""

from __future__ import annotations

import math
from pathlib import Path


def mia_matrix(summaries: dict[str, dict], attack: str = "min_k") -> tuple[list[str], list[str], list[list[float]]]:
    """``(settings, langs, auc[setting][lang])`` from each setting's SUMMARY.json ``metrics``
    (the ``mia`` metric's ``mia_auc_<attack>`` per language; NaN where a setting lacks a language)."""
    key = f"mia_auc_{attack}"
    missing = [name for name, summary in summaries.items() if key not in summary]
    if missing:
        raise KeyError(f"{key} not in the summaries of {', '.join(missing)}: evaluate them with the mia metric "
                       f"(eval.metrics=[..., mia])")
    settings = list(summaries)
    langs = list(dict.fromkeys(lang for s in settings for lang in summaries[s][key]["lang"]))
    rows = [[summaries[s][key]["lang"].get(lang, {}).get("mean", math.nan) for lang in langs] for s in settings]
    return settings, langs, rows


def plot_mia_heatmap(summaries: dict[str, dict], out: Path, attack: str = "min_k", title: str = "") -> Path:
    """Heatmap of the AUC per forget setting (rows) and probe language (columns), centred at 0.5
    (no trace of membership); each cell annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings, langs, rows = mia_matrix(summaries, attack)
    fig, ax = plt.subplots(figsize=(0.7 * len(langs) + 2.5, 0.45 * len(settings) + 1.6))
    image = ax.imshow(rows, cmap="RdBu_r", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(settings)), settings)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            ax.text(j, i, "–" if math.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label=f"MIA AUC ({attack}); 0.5 = chance")
    ax.set_title(title or f"membership inference per probe language ({attack})")
    return _save(fig, out)


def plot_tradeoff(points: list[dict], out: Path, title: str = "") -> Path:
    """Forget quality (log scale) vs model utility, one panel per language. ``points``: dicts with
    ``lang``, ``label`` (method x setting), ``forget_quality``, ``model_utility`` and optionally
    ``reference`` (e.g. "finetuned", "retain": drawn as stars and named)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(dict.fromkeys(p["lang"] for p in points))
    if not langs:
        raise ValueError("plot_tradeoff: no points")
    fig, axes = plt.subplots(1, len(langs), figsize=(3.6 * len(langs), 3.4), squeeze=False)
    for ax, lang in zip(axes[0], langs):
        for p in (p for p in points if p["lang"] == lang):
            ref = p.get("reference")
            ax.scatter(p["model_utility"], max(p["forget_quality"], 1e-30), marker="*" if ref else "o",
                       s=120 if ref else 30, color="black" if ref else None, label=ref or p["label"])
            if ref:
                ax.annotate(ref, (p["model_utility"], max(p["forget_quality"], 1e-30)), fontsize=7)
        ax.set_yscale("log")
        ax.set_xlabel("model utility")
        ax.set_title(lang)
    axes[0][0].set_ylabel("forget quality (KS p-value)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), fontsize=7, loc="upper right")
    fig.suptitle(title or "forget quality vs model utility")
    return _save(fig, out)


def _save(fig, out) -> Path:
    """Write ``fig`` to ``out`` (its folder made) and release it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
