"""An evaluation report a person reads: per-class precision, recall and F1, and a
confusion matrix picture (PNG) per labelled field. Labels are the stable codes
(ASCII), so the pictures need no CJK font."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a server

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .model import FIELDS  # noqa: E402


def write_report(metrics: dict, predictions, rows: list[dict], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    lines = [f"# Evaluation of {metrics.get('model_version')}", "", f"{metrics.get('records')} records."]
    if metrics.get("holdout"):
        lines.append(f"Held out: {metrics['holdout']}.")
    for field in FIELDS:
        m = metrics.get(field)
        if not m:
            continue
        lines += ["", f"## {field}", "", f"accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}", "",
                  "| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
        for label, c in sorted(m["per_class"].items()):
            lines.append(f"| {label} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
        pairs = [(str(r[field]), str(getattr(p, field))) for r, p in zip(rows, predictions, strict=True)
                 if r.get(field) not in (None, "")]
        png = out / f"confusion_{field}.png"
        _confusion(pairs, f"{field} — {metrics.get('model_version')}", png)
        lines += ["", f"![confusion matrix]({png.name})"]
        written.append(png)
    md = out / "report.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [md, *written]


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
    ax.set_xlabel("predicted")
    ax.set_ylabel("labelled")
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
