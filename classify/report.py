"""An evaluation report a person reads: per-class precision, recall and F1, and a
confusion matrix picture (PNG) per labelled field; a reliability diagram per field
with a confidence, and for the category the curve a triage threshold is chosen
from (share routed automatically against the accuracy of what is routed); and,
after training, the model against the textbook baseline.

Labels are the stable codes (ASCII); titles are in Chinese as well when a CJK font
(WenQuanYi Micro Hei, as packaged by ``fonts-wqy-microhei``, or Noto CJK) is
installed, and in English alone when none is."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a server

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from .model import FIELDS, routing_curve  # noqa: E402

CJK_FONTS = ("WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Source Han Sans SC")
_CJK_FILES = ("wqymicrohei", "wqyzenhei", "notosanscjk", "sourcehansans")  # file names, without - and _


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The CJK font matplotlib draws Chinese with, made its first choice; None when there is none.

    matplotlib's font cache is built once, so a font installed after it is found by file name
    and added."""
    known = {f.name for f in font_manager.fontManager.ttflist}
    name = next((n for n in CJK_FONTS if n in known), None)
    if name is None:
        for path in font_manager.findSystemFonts():
            if any(k in Path(path).name.lower().replace("-", "").replace("_", "") for k in _CJK_FILES):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        known = {f.name for f in font_manager.fontManager.ttflist}
        name = next((n for n in CJK_FONTS if n in known), None)
    if name is not None:
        matplotlib.rcParams["font.family"] = "sans-serif"
        matplotlib.rcParams["font.sans-serif"] = [name, *matplotlib.rcParams["font.sans-serif"]]
        matplotlib.rcParams["axes.unicode_minus"] = False
    return name


def _t(chinese: str, english: str) -> str:
    return f"{chinese} {english}" if cjk_font() else english


def fields_of(metrics: dict) -> list[str]:
    return [f for f in (*FIELDS, *metrics.get("outputs", [])) if metrics.get(f)]


def write_report(metrics: dict, predictions, rows: list[dict], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    lines = [f"# Evaluation of {metrics.get('model_version')}", "", f"{metrics.get('records')} records."]
    if metrics.get("holdout"):
        lines.append(f"Held out: {metrics['holdout']}.")
    lines += _baseline_lines(metrics)
    for field in fields_of(metrics):
        m = metrics[field]
        lines += ["", f"## {field}", "", f"accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}", "",
                  "| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
        for label, c in sorted(m["per_class"].items()):
            lines.append(f"| {label} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
        labelled = [(r, p) for r, p in zip(rows, predictions, strict=True) if r.get(field) not in (None, "")]
        pairs = [(str(r[field]), str(p.label(field))) for r, p in labelled]
        png = out / f"confusion_{field}.png"
        _confusion(pairs, f"{field} — {metrics.get('model_version')}", png)
        lines += ["", f"![confusion matrix]({png.name})"]
        written.append(png)
        if "ece" in m:
            conf = [p.confidence(field) for _, p in labelled]
            ok = [a == b for a, b in pairs]
            written += _confidence_pictures(field, m, conf, ok, out, lines)
    md = out / "report.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [md, *written]


def _baseline_lines(metrics: dict) -> list[str]:
    base = metrics.get("baseline")
    if not base:
        return []
    lines = ["", "## Against the textbook baseline", "", f"Baseline: {base['model']}, trained on the same records "
             "and measured on the same held-out split.", "",
             "| field | ours accuracy | ours macro-F1 | baseline accuracy | baseline macro-F1 |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for field in fields_of(metrics):
        if field in base:
            ours, b = metrics[field], base[field]
            lines.append(f"| {field} | {ours['accuracy']:.3f} | {ours['macro_f1']:.3f} | "
                         f"{b['accuracy']:.3f} | {b['macro_f1']:.3f} |")
    return lines


def _confidence_pictures(field: str, m: dict, conf, ok, out: Path, lines: list[str]) -> list[Path]:
    """The reliability diagram of ``field`` and, for the category, the routing curve; their
    lines in the report."""
    png = out / f"reliability_{field}.png"
    _reliability(conf, ok, _t("可靠性图", "reliability") + f" — {field} (ECE {m['ece']:.3f})", png)
    lines += ["", f"![reliability diagram]({png.name})"]
    written = [png]
    route = m.get("auto_route")
    if route is not None:
        png = out / f"routing_{field}.png"
        _routing(conf, ok, route, png)
        lines += ["", _route_sentence(route), "", f"![share routed against accuracy]({png.name})"]
        written.append(png)
    return written


def _route_sentence(route: dict) -> str:
    target = f"{route['target_accuracy']:.0%}"
    if route["min_confidence"] is None:
        text = f"No confidence threshold routes messages that are {target} right."
    else:
        text = (f"Routed automatically at confidence ≥ {route['min_confidence']:.3f}: {route['share_routed']:.1%} "
                f"of messages, {route['accuracy_routed']:.1%} right (target {target}).")
    if conf := route.get("configured"):
        acc = "—" if conf["accuracy_routed"] is None else f"{conf['accuracy_routed']:.1%}"
        text += (f" At the configured routing.min_confidence {conf['min_confidence']}: {conf['share_routed']:.1%} "
                 f"routed, {acc} right.")
    return text


def _reliability(conf, ok, title: str, path: Path, bins: int = 10) -> None:
    c, k = np.asarray(conf, dtype=float), np.asarray(ok, dtype=float)
    which = np.clip(np.ceil(c * bins).astype(int) - 1, 0, bins - 1)  # (lo, hi] bins, 0 in the first
    centres = (np.arange(bins) + 0.5) / bins
    count = np.bincount(which, minlength=bins)
    acc = np.divide(np.bincount(which, weights=k, minlength=bins), count, out=np.zeros(bins), where=count > 0)
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label=_t("完全校准", "perfectly calibrated"))
    ax.bar(centres[count > 0], acc[count > 0], width=1 / bins, edgecolor="black", alpha=0.7,
           label=_t("各区间准确率", "accuracy in bin"))
    ax.set_ylabel(_t("准确率", "accuracy"))
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(centres, count, width=1 / bins, edgecolor="black", color="tab:grey")
    hist.set_xlabel(_t("置信度", "confidence"))
    hist.set_ylabel(_t("条数", "messages"))
    hist.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _routing(conf, ok, route: dict, path: Path) -> None:
    t, share, acc = routing_curve(conf, ok)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(share, acc, color="tab:blue", lw=1.5)
    ax.axhline(route["target_accuracy"], ls="--", color="grey", lw=1)
    marks = [(route, "tab:green", _t("95% 准确的阈值", "threshold for 95%"))]
    if route.get("configured"):
        marks.append((route["configured"], "tab:red", _t("当前配置", "configured")))
    for m, colour, name in marks:
        if m.get("min_confidence") is not None and m.get("accuracy_routed") is not None:
            ax.scatter([m["share_routed"]], [m["accuracy_routed"]], color=colour, zorder=3,
                       label=f"{name}: ≥ {m['min_confidence']:.3f}")
    ax.set_xlabel(_t("自动分拨占比", "share routed automatically"))
    ax.set_ylabel(_t("自动分拨的准确率", "accuracy of those routed"))
    ax.set_xlim(0, 1.02)
    ax.set_ylim(max(0.0, float(acc.min()) - 0.05) if len(acc) else 0, 1.005)
    ax.set_title(_t("置信度阈值：分拨占比与准确率", "confidence threshold: share routed vs accuracy"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _confusion(pairs, title: str, path: Path) -> None:
    labels = sorted({a for a, _ in pairs} | {b for _, b in pairs})
    index = {label: i for i, label in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=int)
    for a, b in pairs:
        cm[index[a], index[b]] += 1
    size = max(5, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel(_t("预测", "predicted"))
    ax.set_ylabel(_t("标注", "labelled"))
    ax.set_title(title, fontsize=10)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
