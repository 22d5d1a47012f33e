"""Training data: labelled history, the labels topic, the held-out split, and the
textbook baseline every trained model is measured against.

Dispatchers' corrections land on ``wz.labels`` as JSON objects with the message
``id``, its ``text`` (masked) and ``title``, and the corrected ``category``,
``type`` and/or ``jurisdiction``. The topic is read from the beginning without
a consumer group (nothing is committed); for one id the latest correction wins,
and a correction replaces the history record with the same id.
"""

from __future__ import annotations

import json
import logging

from kafka import TopicPartition

from wenzheng.core.kafka import Topics, consumer, read_partition

from .model import TIME_FIELDS, _doc, _label, split_holdout

log = logging.getLogger(__name__)

BASELINE = "jieba (default dictionary, HMM on) + TF-IDF + LinearSVC (C=1), no calibration"

def read_labels_topic(settings) -> list[dict]:
    topic = Topics(settings.kafka.topic_prefix).labels
    c = consumer(settings, group=None, client_id="wenzheng-train")
    rows: list[dict] = []
    try:
        for p in sorted(c.partitions_for_topic(topic) or []):
            for rec in read_partition(c, TopicPartition(topic, p), 0, timeout=300):
                try:
                    row = json.loads(rec.value)
                except (ValueError, TypeError):
                    log.warning("skipping a label that is not JSON", extra={"offset": rec.offset, "partition": p})
                    continue
                if isinstance(row, dict) and str(row.get("text") or "").strip():
                    rows.append(row)
    finally:
        c.close()
    return rows


def _key(row: dict) -> str:
    return str(row.get("id") or row["text"])


def merge_corrections(history: list[dict], corrections: list[dict]) -> list[dict]:
    latest: dict[str, dict] = {}
    for row in corrections:
        latest[_key(row)] = {**latest.get(_key(row), {}), **row}
    merged = [latest.pop(str(r.get("id")), r) if r.get("id") else r for r in history]
    return merged + list(latest.values())


CORRECTION_WEIGHT = 5
"""How many times a dispatcher's correction counts in training. A correction is the city's own
decision, checked by a person, where the history (or the packaged corpus) is someone else's
general rule: where the city files a kind of message otherwise than the handbook (its
bike-share regulation with the 交通运输局, say), nine corrections counted once are outvoted by
hundreds of corpus messages and the next model still routes the kind wrong
(``tests/test_correction_loop.py``); counted five times they teach it."""


def weigh_corrections(train: list[dict], corrections: list[dict], weight: int = CORRECTION_WEIGHT) -> list[dict]:
    """``train`` with each row that a correction decided repeated to count ``weight`` times (only
    the training side: a correction in the held-out part is measured once, as it came)."""
    corrected = {_key(c) for c in corrections}
    return train + [r for r in train if _key(r) in corrected] * max(weight - 1, 0)


def split(rows: list[dict], fraction: float = 0.2) -> tuple[list[dict], list[dict], str]:
    """:func:`~wenzheng.classify.model.split_holdout`, and a phrase saying which split it was."""
    train, test = split_holdout(rows, fraction)
    field = next((f for f in TIME_FIELDS if rows and all(r.get(f) not in (None, "") for r in rows)), None)
    how = f"time-ordered by {field}: latest {fraction:.0%}" if field else "fixed hash split by id (one in five)"
    return train, test, how


def textbook_baseline(train: list[dict], test: list[dict], fields=("category", "type")) -> dict:
    """Accuracy and macro-F1 on ``test`` of what a tutorial would build from ``train``: the raw
    text cut by jieba as it comes, TF-IDF, one LinearSVC per field. A model that does not beat
    it on the same split has not earned its features."""
    from sklearn.metrics import accuracy_score, f1_score

    guesses = textbook_model(train, fields)(test)
    out: dict = {"model": BASELINE}
    for field, guess in guesses.items():
        pairs = [(str(_label(r.get(field))), g) for r, g in zip(test, guess, strict=True) if _label(r.get(field))]
        if not pairs:
            continue
        truth, got = zip(*pairs, strict=True)
        out[field] = {"accuracy": round(accuracy_score(truth, got), 4),
                      "macro_f1": round(f1_score(truth, got, labels=sorted(set(truth)), average="macro",
                                                 zero_division=0), 4)}
    return out


def textbook_model(train: list[dict], fields=("category", "type")):
    """The textbook baseline fitted on ``train``: a function of records → {field: labels}."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from . import text as textmod

    cut = textmod._base().lcut  # jieba's own dictionary, loaded once per process and never changed
    vec = TfidfVectorizer(tokenizer=cut, token_pattern=None, lowercase=False)
    X = vec.fit_transform([_doc(r) for r in train])
    svcs = {}
    for field in fields:
        idx = [i for i, r in enumerate(train) if _label(r.get(field))]
        y = [str(_label(train[i][field])) for i in idx]
        if len(set(y)) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svcs[field] = LinearSVC(C=1.0).fit(X[idx], y)

    def predict(rows: list[dict]) -> dict[str, list[str]]:
        Xt = vec.transform([_doc(r) for r in rows])
        return {field: [str(g) for g in svc.predict(Xt)] for field, svc in svcs.items()}

    return predict
