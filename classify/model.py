"""The classifier: jieba words → TF-IDF → one linear head per labelled field.

A model directory holds ``model.pkl`` (the vectorizer and the heads),
``meta.json`` (version, labels, data hash, code version) and ``metrics.json``.
Category and type come from the heads; jurisdiction from the place names in the
text first, and from a head only where no place name decides it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from wenzheng.config import UNKNOWN, Settings

from . import text as textmod
from .places import PlaceResolver

FIELDS = ("category", "type", "jurisdiction")
CORPUS_DIR = Path(__file__).resolve().parent / "data" / "corpus"
FORMAT = 1


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wenzheng")
    except PackageNotFoundError:
        return "unknown"


def read_labelled(paths: list[str | Path]) -> list[dict]:
    """Labelled history from JSONL or CSV files (fields text, title?, category?, type?, jurisdiction?)."""
    rows: list[dict] = []
    for p in paths:
        p = Path(p)
        raw = p.read_bytes()
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            content = raw.decode("gb18030")
        if p.suffix.lower() == ".csv":
            rows.extend(dict(r) for r in csv.DictReader(io.StringIO(content)))
        else:
            for n, line in enumerate(content.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{p}:{n}: not JSON: {exc.msg}") from None
    for i, r in enumerate(rows):
        if not str(r.get("text") or "").strip():
            raise ValueError(f"record {i + 1} has no text")
    return rows


def corpus_files() -> list[Path]:
    return sorted(CORPUS_DIR.glob("*.jsonl"))


def is_test(record: dict) -> bool:
    """The fixed test split: one in five ids, by hash, never trained on."""
    key = str(record.get("id") or record.get("text"))
    return hashlib.sha1(key.encode("utf-8")).digest()[0] % 5 == 0


def data_hash(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def _doc(r: dict) -> str:
    return f"{r.get('title') or ''} {r.get('text') or ''}".strip()


@dataclass
class Prediction:
    category: str
    category_confidence: float
    type: str
    type_confidence: float
    jurisdiction: str
    jurisdiction_source: str


class Classifier:
    def __init__(self, vectorizer, heads: dict, meta: dict, places: PlaceResolver | None):
        self.vectorizer, self.heads, self.meta, self.places = vectorizer, heads, meta, places

    @property
    def version(self) -> str:
        return self.meta["version"]

    @classmethod
    def train(cls, rows: list[dict], settings: Settings | None, *, progress=None) -> Classifier:
        places = PlaceResolver(settings) if settings else None
        if places:
            textmod.add_words(places.words())
        docs = [_doc(r) for r in rows]
        tokens = []
        for i, d in enumerate(docs):
            tokens.append(textmod.tokenize(d))
            if progress and (i + 1) % 1000 == 0:
                progress(i + 1, len(docs))
        vec = TfidfVectorizer(analyzer=textmod.identity, sublinear_tf=True, min_df=1, max_df=0.9)
        X = vec.fit_transform(tokens)
        heads = {}
        for field in FIELDS:
            labelled = [i for i, r in enumerate(rows) if r.get(field) not in (None, "")]
            labels = {rows[i][field] for i in labelled}
            if len(labels) < 2:
                continue
            clf = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced")
            clf.fit(X[labelled], [rows[i][field] for i in labelled])
            heads[field] = clf
        stamp = time.strftime("%Y%m%dT%H%M%S")
        digest = data_hash(rows)
        meta = {"format": FORMAT, "version": f"m{stamp}-{digest[:8]}", "trained_at": stamp,
                "data_sha256": digest, "records": len(rows), "code_version": code_version(),
                "labels": {f: [str(c) for c in h.classes_] for f, h in heads.items()}}
        return cls(vec, heads, meta, places)

    def save(self, directory: str | Path, metrics: dict | None = None) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "model.pkl.tmp", "wb") as f:
            pickle.dump({"vectorizer": self.vectorizer, "heads": self.heads}, f, protocol=5)
        (d / "model.pkl.tmp").replace(d / "model.pkl")
        (d / "meta.json").write_text(json.dumps(self.meta, ensure_ascii=False, indent=2), encoding="utf-8")
        if metrics is not None:
            (d / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, settings: Settings | None) -> Classifier:
        d = Path(directory)
        if not (d / "model.pkl").is_file():
            raise ValueError(f"{d}: not a model directory (no model.pkl)")
        with open(d / "model.pkl", "rb") as f:
            blob = pickle.load(f)  # noqa: S301 — our own model files
        meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        places = PlaceResolver(settings) if settings else None
        if places:
            textmod.add_words(places.words())
        return cls(blob["vectorizer"], blob["heads"], meta, places)

    def predict(self, records: list[dict]) -> list[Prediction]:
        docs = [_doc(r) for r in records]
        X = self.vectorizer.transform([textmod.tokenize(d) for d in docs])
        out: dict[str, tuple[list, np.ndarray]] = {}
        for field, head in self.heads.items():
            proba = head.predict_proba(X)
            best = proba.argmax(axis=1)
            out[field] = ([str(head.classes_[i]) for i in best], proba[np.arange(len(best)), best])
        preds = []
        for i, doc in enumerate(docs):
            cat, catp = _pick(out, "category", i)
            typ, typp = _pick(out, "type", i)
            jur, src = (self.places.resolve(textmod.normalise(doc)) if self.places else (UNKNOWN, None))
            if jur != UNKNOWN:
                source = f"place:{src}"
            elif "jurisdiction" in out:
                jur, source = out["jurisdiction"][0][i], "model"
            else:
                source = "none"
            preds.append(Prediction(cat, round(float(catp), 4), typ, round(float(typp), 4), jur, source))
        return preds

    def evaluate(self, rows: list[dict]) -> dict:
        preds = self.predict(rows)
        report: dict = {"model_version": self.version, "records": len(rows)}
        for field in FIELDS:
            pairs = [(r[field], getattr(p, field)) for r, p in zip(rows, preds, strict=True)
                     if r.get(field) not in (None, "")]
            if not pairs:
                continue
            y, yhat = zip(*pairs, strict=True)
            labels = sorted(set(y) | set(yhat))
            prec, rec, f1, sup = precision_recall_fscore_support(y, yhat, labels=labels, zero_division=0)
            report[field] = {
                "accuracy": round(accuracy_score(y, yhat), 4),
                "macro_f1": round(f1_score(y, yhat, labels=sorted(set(y)), average="macro", zero_division=0), 4),
                "per_class": {lab: {"precision": round(float(a), 4), "recall": round(float(b), 4),
                                    "f1": round(float(c), 4), "support": int(d)}
                              for lab, a, b, c, d in zip(labels, prec, rec, f1, sup, strict=True)},
            }
        first = next((report[f] for f in FIELDS if f in report), {"accuracy": 0.0, "macro_f1": 0.0})
        report["accuracy"], report["macro_f1"] = first["accuracy"], first["macro_f1"]
        return report


def _pick(out: dict, field: str, i: int) -> tuple[str, float]:
    if field not in out:
        return UNKNOWN, 0.0
    labels, conf = out[field]
    return labels[i], conf[i]


def baseline(settings: Settings, cache_root: str | Path) -> Classifier:
    """The packaged corpus's model, trained once and cached by the corpus's hash."""
    rows = [r for r in read_labelled(corpus_files()) if not is_test(r)]
    if not rows:
        raise ValueError(f"no labelled corpus in {CORPUS_DIR}")
    d = Path(cache_root).expanduser() / f"baseline-{data_hash(rows)[:12]}"
    if (d / "model.pkl").is_file():
        return Classifier.load(d, settings)
    model = Classifier.train(rows, settings)
    model.meta["version"] = f"baseline-{data_hash(rows)[:8]}"
    model.save(d)
    return model
