"""The classifier: normalised text → jieba words + character bigrams → TF-IDF →
one calibrated linear head per labelled field.

Choices, each measured on the packaged corpus (5-fold cross-validation on the
training split, then the fixed test split; the figures are in the issue note):

* features: jieba words (HMM off, user dictionary of place names and domain
  terms) plus character bigrams of the Chinese runs — the bigrams add 3–4 points
  of macro-F1 to both heads and cover typos and words the dictionary lacks;
  sublinear tf, ``min_df=2`` (a word seen once is noise, and often a name or an
  address that has no business in a model file), ``max_df=0.5``;
* heads: LinearSVC (``C=1``, ``class_weight='balanced'``) with sigmoid (Platt)
  calibration fitted on out-of-fold scores (``CalibratedClassifierCV``,
  ``ensemble=False``), then reduced to a ``LinearHead`` (weights + two numbers
  per class). As accurate as logistic regression, SGD or complement naive Bayes,
  and its confidence is calibrated (expected calibration error about 0.06 for
  the category and 0.04 for the type, against 0.13–0.36 for balanced logistic
  regression and 0.6 for naive Bayes), so ``routing.min_confidence`` means what
  it says;
* jurisdiction: the place names in the text first (``places.PlaceResolver``);
  the jurisdiction head is trained only on the records no place name decides,
  and answers only for those;
* more outputs: any other labelled field named in ``classifier.outputs`` (e.g.
  ``urgency``) gets a head of its own, is predicted into ``Prediction.outputs`` and
  recorded as ``<field>`` and ``<field>_confidence`` after the three fixed fields.

Switchable features, measured side by side by ``benchmarks/features.py`` (the
figures are in its output): character n-grams of several lengths, the title's
words counted again, the request sentences (first, last, 希望/要求/恳请…) counted
again, the 归口 handbook's terms as dictionary words and marker tokens, and
sigmoid, isotonic or temperature calibration. A parameter a model was saved
without takes its neutral value (``NEUTRAL_PARAMS``) when it loads, so an old
model cuts and decides as it did.

A model directory holds ``model.pkl`` (the vectorizer, the heads, the feature
parameters, the words of its dictionary and the place resolver), ``meta.json``
(version, labels, data hash, code version, parameters) and ``metrics.json``. Every
callable in the pickle is a module-level function, so a model loads in any process;
its jieba dictionary is rebuilt from its words (``text.Tokenizer``), never shared
with another model.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from wenzheng.config import UNKNOWN, Settings

from . import text as textmod
from .places import PlaceResolver

FIELDS = ("category", "type", "jurisdiction")
# Keys of a classification record no extra output may take.
RESERVED = frozenset({*FIELDS, "model_version", "jurisdiction_source", "classified_at"})
CORPUS_DIR = Path(__file__).resolve().parent / "data" / "corpus"
FORMAT = 2
TIME_FIELDS = ("posted_at", "created_at", "time", "date")

# The measured defaults (see the module docstring); ``Classifier.train(params=…)``
# overrides any of them.
DEFAULT_PARAMS = {
    "chars": 2,            # character n-gram length added to the words (0: words only)
    "min_df": 2,           # on corpora of fewer than ``small`` records: 1
    "max_df": 0.5,         # on corpora of fewer than ``small`` records: 1.0
    "small": 100,
    "C": 1.0,              # LinearSVC regularisation
    "folds": 5,            # calibration folds (fewer when a class has fewer examples) …
    "large": 20000,        # … and 3, run in parallel, for a head of this many records or more
    "min_class": 3,        # labels with fewer examples are repeated up to this many
    "chars_min": None,     # shortest character n-gram (None: only ``chars`` long)
    "title_weight": 1,     # times the title's words count (1: as the text's)
    "request_weight": 0,   # extra times the request sentences' words count (0: none)
    "handbook": "off",     # "words": the 归口 handbook's terms in the dictionary; "markers": also §label tokens
    "calibration": "temperature",  # or "sigmoid" (Platt, per class), "isotonic"
}
# What a parameter a model was saved without meant then: the behaviour before it existed.
NEUTRAL_PARAMS = {"chars_min": None, "title_weight": 1, "request_weight": 0, "handbook": "off",
                  "calibration": "sigmoid"}
CHOICES = {"handbook": ("off", "words", "markers"), "calibration": ("sigmoid", "isotonic", "temperature")}


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wenzheng")
    except PackageNotFoundError:
        return "unknown"


def read_labelled(paths: Sequence[str | Path]) -> list[dict]:
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
        if not isinstance(r, dict):
            raise ValueError(f"record {i + 1} is not an object")
        if not str(r.get("text") or "").strip():
            raise ValueError(f"record {i + 1} has no text")
    return rows


def corpus_files() -> list[Path]:
    return sorted(CORPUS_DIR.glob("*.jsonl"))


def is_test(record: dict) -> bool:
    """The fixed test split: one in five ids, by hash, never trained on."""
    key = str(record.get("id") or record.get("text"))
    return hashlib.sha1(key.encode("utf-8")).digest()[0] % 5 == 0


def split_holdout(rows: list[dict], fraction: float = 0.2) -> tuple[list[dict], list[dict]]:
    """(train, test). Time-ordered when every record carries a time (``posted_at``,
    ``created_at``, ``time`` or ``date``, the first that all have): the latest
    ``fraction`` is the test, as the model will meet messages newer than its
    history. Otherwise the fixed hash split of ``is_test`` (one in five)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction!r}")
    field = next((f for f in TIME_FIELDS if rows and all(r.get(f) not in (None, "") for r in rows)), None)
    if field is None:
        return [r for r in rows if not is_test(r)], [r for r in rows if is_test(r)]
    ordered = sorted(rows, key=lambda r: _time_key(r[field]))
    cut = int(len(ordered) * (1 - fraction))
    return ordered[:cut], ordered[cut:]


def _time_key(value) -> tuple:
    """Numbers (epoch seconds) sort as numbers, anything else as ISO-like text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    s = str(value).strip()
    try:
        return (0, float(s), "")
    except ValueError:
        return (1, 0.0, s.replace("T", " ").replace("/", "-"))


def data_hash(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def check_params(params: dict | None) -> dict:
    """``DEFAULT_PARAMS`` with ``params`` over them, refused when a name or a choice is unknown."""
    unknown = set(params or {}) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown model parameters: {', '.join(sorted(unknown))}")
    p = {**DEFAULT_PARAMS, **(params or {})}
    for name, allowed in CHOICES.items():
        if p[name] not in allowed:
            raise ValueError(f"model parameter {name} must be one of {', '.join(allowed)}, not {p[name]!r}")
    return p


def check_outputs(outputs) -> list[str]:
    """The extra fields to train heads for: lower-case identifiers that no record key takes."""
    out: list[str] = []
    for name in outputs or []:
        if not (isinstance(name, str) and name.isidentifier() and name.islower()):
            raise ValueError(f"classifier output {name!r}: must be a lower-case identifier")
        if name in RESERVED or name.endswith("_confidence"):
            raise ValueError(f"classifier output {name!r}: a classification record already has that key")
        if name not in out:
            out.append(name)
    return out


def _doc(r: dict) -> str:
    return f"{r.get('title') or ''} {r.get('text') or ''}".strip()


def _label(value) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


@dataclass
class Prediction:
    category: str
    category_confidence: float
    type: str
    type_confidence: float
    jurisdiction: str
    jurisdiction_source: str
    outputs: dict[str, tuple[str, float]] = dc_field(default_factory=dict)
    """The extra outputs (``classifier.outputs``): field → (label, confidence)."""
    category_top: list[tuple[str, float]] = dc_field(default_factory=list)
    """The :data:`TOP` likeliest categories and their confidence, likeliest first (the
    dispatcher's workbench shows them: a triage message's second guess is often right)."""

    def label(self, name: str) -> str:
        return self.outputs[name][0] if name in self.outputs else getattr(self, name)

    def confidence(self, name: str) -> float | None:
        if name in self.outputs:
            return self.outputs[name][1]
        return getattr(self, f"{name}_confidence", None)

    def record(self, model_version: str) -> dict:
        """The ``classification`` a classified message carries (without its time): the fixed
        fields as they always were, then each extra output and its confidence, then
        ``category_top`` (the three likeliest categories, ``[{category, confidence}]``)."""
        rec = {"category": self.category, "category_confidence": self.category_confidence, "type": self.type,
               "type_confidence": self.type_confidence, "jurisdiction": self.jurisdiction,
               "jurisdiction_source": self.jurisdiction_source, "model_version": model_version}
        for name, (label, conf) in self.outputs.items():
            rec[name], rec[f"{name}_confidence"] = label, conf
        if self.category_top:
            rec["category_top"] = [{"category": c, "confidence": p} for c, p in self.category_top]
        return rec


class LinearHead:
    """A fitted head reduced to what prediction needs: the linear SVM's weights and, per class,
    the sigmoid (Platt) calibration of its score; probabilities are normalised over the
    classes, as ``CalibratedClassifierCV`` does. Same numbers, a fraction of the cost
    per batch, and a small pickle."""

    def __init__(self, coef, intercept, a, b, classes):
        self.coef_ = np.ascontiguousarray(coef, dtype=np.float32)
        self.intercept_ = np.asarray(intercept, dtype=np.float32)
        self.a_ = np.asarray(a, dtype=np.float64)
        self.b_ = np.asarray(b, dtype=np.float64)
        self.classes_ = np.asarray(classes)

    @classmethod
    def from_calibrated(cls, fitted: CalibratedClassifierCV) -> LinearHead:
        cc, est = _single(fitted)
        a = [c.a_ for c in cc.calibrators]
        b = [c.b_ for c in cc.calibrators]
        return cls(est.coef_, est.intercept_, a, b, fitted.classes_)

    def scores(self, X) -> np.ndarray:
        return np.asarray(X @ self.coef_.T, dtype=np.float64) + self.intercept_

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        return _normalised(1.0 / (1.0 + np.exp(np.clip(self.a_ * scores + self.b_, -500, 500))))

    def predict_proba(self, X) -> np.ndarray:
        return self.calibrate(self.scores(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class IsotonicHead(LinearHead):
    """The SVM's weights with an isotonic (monotone step) calibration per class: no shape
    assumed, so it needs more examples per class than the sigmoid to be smooth."""

    def __init__(self, coef, intercept, curves, classes):
        super().__init__(coef, intercept, [], [], classes)
        self.curves_ = [(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)) for x, y in curves]

    @classmethod
    def from_calibrated(cls, fitted: CalibratedClassifierCV) -> IsotonicHead:
        cc, est = _single(fitted)
        curves = [(c.X_thresholds_, c.y_thresholds_) for c in cc.calibrators]
        return cls(est.coef_, est.intercept_, curves, fitted.classes_)

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        # np.interp holds the end values beyond the curve, as the calibrator's out_of_bounds="clip"
        return _normalised(np.column_stack([np.interp(scores[:, j], x, y) for j, (x, y) in enumerate(self.curves_)]))


class TemperatureHead(LinearHead):
    """The softmax of the SVM's scores times one inverse temperature for all classes: the
    ranking stays the SVM's own and one number cannot overfit a small class."""

    def __init__(self, coef, intercept, beta, classes):
        super().__init__(coef, intercept, [], [], classes)
        self.beta_ = float(beta)

    @classmethod
    def from_calibrated(cls, fitted: CalibratedClassifierCV) -> TemperatureHead:
        cc, est = _single(fitted)
        return cls(est.coef_, est.intercept_, cc.calibrators[0].beta_, fitted.classes_)

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        z = self.beta_ * (np.hstack([-scores, scores]) if scores.shape[1] == 1 else scores)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


HEADS: dict[str, type[LinearHead]] = {"sigmoid": LinearHead, "isotonic": IsotonicHead, "temperature": TemperatureHead}


def _single(fitted: CalibratedClassifierCV):
    (cc,) = fitted.calibrated_classifiers_
    known = list(cc.estimator.classes_)
    # temperature scaling fits its estimator on the classes' indices, the others on the labels
    if known != list(fitted.classes_) and known != list(range(len(fitted.classes_))):
        raise ValueError("the calibrated estimator does not know every class")
    return cc, cc.estimator


def _normalised(p: np.ndarray) -> np.ndarray:
    """One-vs-rest probabilities made a distribution, as ``CalibratedClassifierCV`` makes them:
    a binary head's one column is the second class's; a row of zeros becomes uniform."""
    if p.shape[1] == 1:
        return np.hstack([1.0 - p, p])
    total = p.sum(axis=1, keepdims=True)
    return np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[1]), where=total > 0)


def make_head(y: list[str], params: dict) -> CalibratedClassifierCV:
    """A LinearSVC whose scores are calibrated (``params['calibration']``, on out-of-fold
    scores) for labels ``y``."""
    large = len(y) >= params["large"]
    k = max(2, min(3 if large else params["folds"], min(Counter(y).values())))
    svc = LinearSVC(C=params["C"], class_weight="balanced", max_iter=5000)
    return CalibratedClassifierCV(svc, method=params.get("calibration", "sigmoid"), ensemble=False,
                                  cv=StratifiedKFold(k, shuffle=True, random_state=0),
                                  n_jobs=min(k, os.cpu_count() or 1) if large else None)


def fit_head(X, y: list[str], params: dict) -> LinearHead:
    """A head fitted on ``X``, ``y`` and reduced to its compact form."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = make_head(y, params).fit(X, y)
    return HEADS[params.get("calibration", "sigmoid")].from_calibrated(fitted)


def tfidf(vec: TfidfVectorizer, docs: list[list[str]]):
    """``vec.transform(docs)`` for token lists, the same matrix at about twice the speed.

    The vectorizer's analyzer is the identity (tokens are made once, in ``_prepare``), so
    counting is one dictionary lookup per token; the idf weighting, sublinear tf and
    normalisation are the fitted vectorizer's own. Falls back to ``transform`` for a
    vectorizer this does not know how to mirror.
    """
    weigh = getattr(vec, "_tfidf", None)
    if weigh is None or vec.binary or vec.analyzer is not textmod.identity:
        return vec.transform(docs)
    get = vec.vocabulary_.get
    indices: list[int] = []
    indptr = [0]
    for doc in docs:
        indices.extend([j for j in map(get, doc) if j is not None])
        indptr.append(len(indices))
    counts = sp.csr_matrix((np.ones(len(indices), dtype=vec.dtype), np.asarray(indices, dtype=np.int32),
                            np.asarray(indptr, dtype=np.int32)), shape=(len(docs), len(vec.vocabulary_)))
    counts.sum_duplicates()  # counts per (document, term), indices sorted as sklearn's are
    return weigh.transform(counts, copy=False)


class Classifier:
    def __init__(self, vectorizer, heads: dict, meta: dict, places: PlaceResolver | None,
                 tokenizer: textmod.Tokenizer, handbook: dict[str, tuple[str, ...]] | None = None):
        self.vectorizer, self.heads, self.meta, self.places = vectorizer, heads, meta, places
        self.tokenizer = tokenizer
        self.handbook = handbook or {}  # term → its labels' marker tokens, when params["handbook"] == "markers"
        self.params = {**DEFAULT_PARAMS, "chars": 0, **NEUTRAL_PARAMS, **meta.get("params", {})}

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def outputs(self) -> list[str]:
        """The extra outputs this model was trained to give (``classifier.outputs`` then)."""
        return list(self.meta.get("outputs", []))

    # -- features -----------------------------------------------------------------

    def _prepare(self, records: list[dict], progress=None) -> tuple[list[list[str]], list[str]]:
        """(features, cleaned text) of each record: one normalisation and one jieba pass, shared
        by every head and by the place resolver."""
        feats, cleaned = [], []
        n = len(records)
        for i, r in enumerate(records):
            c = textmod.clean(_doc(r))
            cleaned.append(c)
            feats.append(self._features(r, c))
            if progress and ((i + 1) % 1000 == 0 or i + 1 == n):
                progress(i + 1, n)
        return feats, cleaned

    def _features(self, record: dict, cleaned: str) -> list[str]:
        """The tokens of one record: its words (the request sentences' again, the title's
        again), the handbook markers of its words, its character n-grams."""
        p, tok = self.params, self.tokenizer
        normalised = textmod._strip(cleaned)
        if p["request_weight"]:
            sentences = textmod.sentences(normalised)
            parts = [tok.cut(x) for x in sentences]
            words = [w for ws in parts for w in ws]
            request = [w for i in textmod.request_indices(sentences) for w in parts[i]]
            words += request * p["request_weight"]
        else:
            words = tok.cut(normalised)
        if p["title_weight"] > 1 and record.get("title"):
            words += tok.cut(textmod.normalise(str(record["title"]))) * (p["title_weight"] - 1)
        if self.handbook:
            get = self.handbook.get
            words += [m for w in words for m in get(w, ())]
        if p["chars"]:
            words += textmod.char_ngrams(normalised, p["chars"], "~", p["chars_min"])
        return words

    # -- training -----------------------------------------------------------------

    @classmethod
    def train(cls, rows: list[dict], settings: Settings | None, *, progress=None,
              params: dict | None = None, outputs: list[str] | None = None) -> Classifier:
        """A model of ``rows``. ``outputs``: the extra labelled fields to learn (default: the
        settings' ``classifier.outputs``)."""
        if not rows:
            raise ValueError("no records to train on")
        p = check_params(params)
        if outputs is None and settings is not None:
            outputs = settings.classifier.outputs
        extra = check_outputs(outputs)
        places = PlaceResolver(settings) if settings else None
        model = cls._blank(p, places)
        feats, cleaned = model._prepare(rows, progress)
        small = len(rows) < p["small"]
        vec = TfidfVectorizer(analyzer=textmod.identity, sublinear_tf=True, dtype=np.float32,
                              min_df=1 if small else p["min_df"], max_df=1.0 if small else p["max_df"])
        try:
            X = vec.fit_transform(feats)
        except ValueError as exc:
            raise ValueError(f"no usable words in the training records ({exc})") from None
        decided = [places.resolve(c)[0] != UNKNOWN for c in cleaned] if places else [False] * len(rows)
        heads, rare_labels = _fit_heads(rows, X, decided, (*FIELDS, *extra), p)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        digest = data_hash(rows)
        model.meta = {"format": FORMAT, "version": f"m{stamp}-{digest[:8]}", "trained_at": stamp,
                      "data_sha256": digest, "records": len(rows), "code_version": code_version(),
                      "labels": {f: [str(c) for c in h.classes_] for f, h in heads.items()},
                      "params": p, "features": len(vec.vocabulary_), "outputs": extra,
                      "jurisdiction_head_records": int(sum(1 for d in decided if not d)),
                      "rare_labels": rare_labels}
        model.vectorizer, model.heads = vec, heads
        return model

    @classmethod
    def _blank(cls, p: dict, places: PlaceResolver | None) -> Classifier:
        """An untrained model with its dictionary: the domain terms, the place names and, when
        asked, the handbook's terms (and the marker tokens they bring)."""
        words = textmod.load_terms() + (places.words() if places else [])
        terms, phrasings = textmod.load_handbook() if p["handbook"] != "off" else ({}, {})
        tokenizer = textmod.Tokenizer(words + [w for ws in terms.values() for w in ws])
        markers = handbook_markers(tokenizer, terms, phrasings) if p["handbook"] == "markers" else {}
        return cls(None, {}, {"version": "", "params": p}, places, tokenizer, markers)

    # -- persistence --------------------------------------------------------------

    def save(self, directory: str | Path, metrics: dict | None = None) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        blob = {"format": FORMAT, "vectorizer": self.vectorizer, "heads": self.heads, "params": self.params,
                "user_words": list(self.tokenizer.words), "places": self.places, "handbook": self.handbook}
        with open(d / "model.pkl.tmp", "wb") as f:
            pickle.dump(blob, f, protocol=5)
        (d / "model.pkl.tmp").replace(d / "model.pkl")
        (d / "meta.json").write_text(json.dumps(self.meta, ensure_ascii=False, indent=2), encoding="utf-8")
        if metrics is not None:
            (d / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, settings: Settings | None) -> Classifier:
        """A saved model. The place names come from ``settings`` when given (the configuration
        may have learnt new ones), else from the model file."""
        d = Path(directory)
        if not (d / "model.pkl").is_file():
            raise ValueError(f"{d}: not a model directory (no model.pkl)")
        try:
            with open(d / "model.pkl", "rb") as f:
                blob = pickle.load(f)  # noqa: S301 — our own model files
            meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
            raise ValueError(f"{d}: cannot read the model ({exc})") from None
        places = PlaceResolver(settings) if settings else blob.get("places")
        # The words it was trained with, so it cuts as it did, and the configuration's place names.
        words = (blob.get("user_words") or textmod.load_terms()) + (places.words() if places else [])
        if "params" in blob:
            meta = {**meta, "params": blob["params"]}
        return cls(blob["vectorizer"], blob["heads"], meta, places, textmod.Tokenizer(words), blob.get("handbook"))

    # -- prediction ---------------------------------------------------------------

    def predict(self, records: list[dict]) -> list[Prediction]:
        if not records:
            return []
        feats, cleaned = self._prepare(records)
        X = tfidf(self.vectorizer, feats)
        places = [self.places.resolve(c) for c in cleaned] if self.places else [(UNKNOWN, None)] * len(records)
        out: dict[str, tuple[list, np.ndarray | None]] = {}
        top: list[list[tuple[str, float]]] = [[] for _ in records]
        for field, head in self.heads.items():
            if field != "jurisdiction":
                proba = head.predict_proba(X)
                out[field] = _best(head, proba)
                if field == "category":
                    top = _top(head, proba)
                continue
            rest = [i for i, (code, _) in enumerate(places) if code == UNKNOWN]
            if rest:
                labels, _ = _best(head, head.predict_proba(X[rest]))
                full = [UNKNOWN] * len(records)
                for j, i in enumerate(rest):
                    full[i] = labels[j]
                out[field] = (full, None)
        return [self._prediction(out, i, jur, name, top[i]) for i, (jur, name) in enumerate(places)]

    def _prediction(self, out: dict, i: int, jur: str, name: str | None,
                    top: list[tuple[str, float]]) -> Prediction:
        cat, catp = _pick(out, "category", i)
        typ, typp = _pick(out, "type", i)
        if jur != UNKNOWN:
            source = f"place:{name}"
        elif "jurisdiction" in out:
            jur, source = out["jurisdiction"][0][i], "model"
        else:
            source = "none"
        extra = {}
        for f in self.outputs:
            lab, conf = _pick(out, f, i)
            extra[f] = (lab, round(float(conf), 4))
        return Prediction(cat, round(float(catp), 4), typ, round(float(typp), 4), jur, source, extra, top)

    def evaluate(self, rows: list[dict], min_confidence: float | None = None) -> dict:
        """Accuracy, macro-F1 and per-class figures of every labelled field; for the fields with a
        confidence its calibration error and, for the category, the confidence threshold at
        which what is routed automatically is 95% right (and at ``min_confidence``, if given)."""
        preds = self.predict(rows)
        report: dict = {"model_version": self.version, "records": len(rows)}
        if self.outputs:
            report["outputs"] = self.outputs
        for field in (*FIELDS, *self.outputs):
            got, conf, ok = _field_report(field, rows, preds, field != "jurisdiction" and field in self.heads)
            if got and field == "category" and conf:
                got["auto_route"] = auto_route(conf, ok, configured=min_confidence)
            if got:
                report[field] = got
        first = next((report[f] for f in FIELDS if f in report), {"accuracy": 0.0, "macro_f1": 0.0})
        report["accuracy"], report["macro_f1"] = first["accuracy"], first["macro_f1"]
        return report


def _fit_heads(rows: list[dict], X, decided: list[bool], fields, p: dict) -> tuple[dict, dict]:
    """One head per field with at least two labels; the jurisdiction head only on the records
    no place name decides."""
    heads, rare_labels = {}, {}
    for field in fields:
        idx = [i for i, r in enumerate(rows) if _label(r.get(field))
               and not (field == "jurisdiction" and decided[i])]
        y = [str(_label(rows[i][field])) for i in idx]
        if len(set(y)) < 2:
            continue
        rare = sorted(lab for lab, n in Counter(y).items() if n < p["min_class"])
        if rare:
            rare_labels[field] = rare
            idx, y = _repeat_rare(idx, y, p["min_class"])
        heads[field] = fit_head(X[idx], y, p)
    return heads, rare_labels


def _repeat_rare(idx: list[int], y: list[str], min_class: int) -> tuple[list[int], list[str]]:
    """Labels with too few examples to calibrate in folds, repeated up to ``min_class`` so the
    head still knows them (class_weight='balanced' keeps the class's total weight)."""
    counts = Counter(y)
    idx, y = list(idx), list(y)
    for j in [j for j, lab in enumerate(y) if counts[lab] < min_class]:
        extra = -(-min_class // counts[y[j]]) - 1
        idx += [idx[j]] * extra
        y += [y[j]] * extra
    return idx, y


def _field_report(field: str, rows: list[dict], preds: list[Prediction], confident: bool) -> tuple[dict, list, list]:
    """One field's figures over the records that carry its label, and (when ``confident``) their
    confidences and whether each was right."""
    triples = [(_label(r.get(field)), p.label(field), p) for r, p in zip(rows, preds, strict=True)
               if _label(r.get(field))]
    if not triples:
        return {}, [], []
    y, yhat, ps = zip(*triples, strict=True)
    labels = sorted(set(y) | set(yhat))
    prec, rec, f1, sup = precision_recall_fscore_support(y, yhat, labels=labels, zero_division=0)
    report = {
        "accuracy": round(accuracy_score(y, yhat), 4),
        "macro_f1": round(f1_score(y, yhat, labels=sorted(set(y)), average="macro", zero_division=0), 4),
        "per_class": {lab: {"precision": round(float(a), 4), "recall": round(float(b), 4),
                            "f1": round(float(c), 4), "support": int(d)}
                      for lab, a, b, c, d in zip(labels, prec, rec, f1, sup, strict=True)},
    }
    if not confident:
        return report, [], []
    conf = [p.confidence(field) for p in ps]
    ok = [a == b for a, b in zip(y, yhat, strict=True)]
    report["ece"] = round(expected_calibration_error(conf, ok), 4)
    report["by_confidence"] = _by_confidence(conf, ok)
    return report, conf, ok


def handbook_markers(tokenizer: textmod.Tokenizer, terms: dict[str, list[str]],
                     phrasings: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """word → marker tokens (``§<label>``) from the handbook: every subtopic-name term and type
    cue marks its label, and a word of the phrasings marks a label when it is in at least two
    of that label's phrasings and in none of another label of its kind (category or type)."""
    seen: dict[str, Counter] = {}
    for label, texts in phrasings.items():
        for t in texts:
            for w in set(tokenizer.tokenize(t)):
                if len(w) >= 2:
                    seen.setdefault(w, Counter())[label] += 1
    marks: dict[str, set[str]] = {}
    for w, counts in seen.items():
        for kind in (True, False):
            mine = [(lab, n) for lab, n in counts.items() if lab.startswith("type:") is kind]
            if len(mine) == 1 and mine[0][1] >= 2:
                marks.setdefault(w, set()).add(mine[0][0])
    for label, ws in terms.items():
        for w in ws:
            marks.setdefault(textmod.clean(w), set()).add(label)
    return {w: tuple(f"§{lab}" for lab in sorted(labs)) for w, labs in marks.items()}


def expected_calibration_error(confidence, correct, bins: int = 10) -> float:
    """Mean |confidence − accuracy| over equal-width confidence bins, weighted by their size."""
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    if not len(conf):
        return 0.0
    total = 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        m = (conf >= lo) & (conf <= hi) if i == 0 else (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(conf[m].mean() - ok[m].mean())
    return float(total)


def _by_confidence(conf: list[float], ok: list[bool]) -> dict:
    """For candidate ``routing.min_confidence`` values: the share of messages below it (the
    triage rate) and the accuracy of those at or above it."""
    c, k = np.asarray(conf), np.asarray(ok, dtype=float)
    out = {}
    for t in (0.3, 0.35, 0.4, 0.5, 0.6, 0.7):
        above = c >= t
        out[f"{t:.2f}"] = {"below": round(float(1 - above.mean()), 4),
                           "accuracy_at_or_above": round(float(k[above].mean()), 4) if above.any() else None}
    return out


def routing_curve(confidence, correct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(threshold, share routed, accuracy of those routed) for every distinct confidence, highest
    first: a threshold routes automatically every message at or above it (``routing.min_confidence``)."""
    c = np.asarray(confidence, dtype=float)
    k = np.asarray(correct, dtype=float)
    if not len(c):
        return np.empty(0), np.empty(0), np.empty(0)
    order = np.argsort(-c, kind="stable")
    c, k = c[order], k[order]
    ends = np.flatnonzero(np.r_[c[1:] != c[:-1], True])  # the last message of each distinct confidence
    n = np.arange(1, len(c) + 1)
    return c[ends], n[ends] / len(c), (np.cumsum(k) / n)[ends]


def auto_route(confidence, correct, target: float = 0.95, configured: float | None = None) -> dict:
    """The lowest threshold at which the messages routed automatically are at least ``target``
    right, the share it routes and their accuracy; and the same figures at ``configured``."""
    t, share, acc = routing_curve(confidence, correct)
    good = np.flatnonzero(acc >= target)
    out: dict = {"target_accuracy": target, "min_confidence": None, "share_routed": 0.0, "accuracy_routed": None}
    if len(good):
        j = good[-1]
        out.update(min_confidence=round(float(t[j]), 4), share_routed=round(float(share[j]), 4),
                   accuracy_routed=round(float(acc[j]), 4))
    if configured is not None:
        c, k = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
        routed = c >= configured
        out["configured"] = {"min_confidence": configured, "share_routed": round(float(routed.mean()), 4),
                             "accuracy_routed": round(float(k[routed].mean()), 4) if routed.any() else None}
    return out


def _best(head, proba: np.ndarray) -> tuple[list[str], np.ndarray]:
    best = proba.argmax(axis=1)
    return [str(head.classes_[i]) for i in best], proba[np.arange(len(best)), best]


TOP = 3
"""How many categories a prediction lists (``Prediction.category_top``)."""


def _top(head, proba: np.ndarray) -> list[list[tuple[str, float]]]:
    order = np.argsort(-proba, axis=1, kind="stable")[:, :TOP]
    return [[(str(head.classes_[j]), round(float(row[j]), 4)) for j in idx] for row, idx in zip(proba, order, strict=True)]


def _pick(out: dict, field: str, i: int) -> tuple[str, float]:
    if field not in out:
        return UNKNOWN, 0.0
    labels, conf = out[field]
    return labels[i], conf[i]


def _feature_fingerprint() -> str:
    """What the packaged baseline depends on besides the corpus: the model format, the
    parameters and the domain terms."""
    h = hashlib.sha256(json.dumps([FORMAT, DEFAULT_PARAMS], sort_keys=True).encode())
    for f in (textmod.TERMS_FILE, textmod.HANDBOOK_FILE if DEFAULT_PARAMS["handbook"] != "off" else None):
        if f is not None and f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()[:6]


def baseline(settings: Settings, cache_root: str | Path) -> Classifier:
    """The packaged corpus's model, trained once and cached by the corpus's hash."""
    rows = [r for r in read_labelled(corpus_files()) if not is_test(r)]
    if not rows:
        raise ValueError(f"no labelled corpus in {CORPUS_DIR}")
    outputs = check_outputs(settings.classifier.outputs)
    tag = "".join(f"-{o}" for o in outputs)
    d = Path(cache_root).expanduser() / f"baseline-{data_hash(rows)[:12]}-{_feature_fingerprint()}{tag}"
    if (d / "model.pkl").is_file():
        return Classifier.load(d, settings)
    model = Classifier.train(rows, settings)
    model.meta["version"] = f"baseline-{data_hash(rows)[:8]}"
    model.save(d)
    return model
