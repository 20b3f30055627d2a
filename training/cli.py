"""`python -m training <command>`: prepare, train, publish, demo-data.

Errors in the user's input end with one line naming the problem (exit 2), not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from newsgen.errors import NewsgenError
from training.tokenizer import TINY


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("prepare", help="clean All-the-News CSVs into train/validation JSONL")
    p.add_argument("--input", nargs="+", type=Path, required=True, help="one or more CSV files")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--min-title-words", type=int, default=8)
    p.add_argument("--max-article-words", type=int, default=100)
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--chunk-rows", type=int, default=10_000, help="rows read at a time (memory stays flat)")

    t = commands.add_parser("train", help="fine-tune a headline or article model with the HF Trainer")
    t.add_argument("--task", choices=("headline", "article"), required=True)
    t.add_argument("--data", type=Path, required=True, help="a directory written by `prepare`")
    t.add_argument("--base", default=TINY, help="tiny (from scratch), distilgpt2, gpt2 or a local checkpoint")
    t.add_argument("--output", type=Path, required=True)
    t.add_argument("--epochs", type=float, default=3.0)
    t.add_argument("--max-steps", type=int, default=-1, help="overrides --epochs when > 0")
    t.add_argument("--batch-size", type=int, default=8, help="per device")
    t.add_argument("--gradient-accumulation-steps", type=int, default=1)
    t.add_argument("--learning-rate", type=float, default=None)
    t.add_argument("--warmup-steps", type=int, default=10)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--logging-steps", type=int, default=10)
    t.add_argument("--eval-steps", type=int, default=50)
    t.add_argument("--save-steps", type=int, default=100)
    t.add_argument("--max-length", type=int, default=None, help="tokens per example")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")

    u = commands.add_parser("publish", help="upload a trained model to S3 as a new version")
    u.add_argument("--model", type=Path, required=True, help="the --output of `train`")
    u.add_argument("--bucket", required=True)
    u.add_argument("--prefix", default="models")
    u.add_argument("--task", choices=("headline", "article"), required=True)
    u.add_argument("--version", default=None, help="default: the UTC time, e.g. 20261128T091500Z")
    u.add_argument("--export", default="fp32", help="weights format to publish")
    u.add_argument("--no-latest", action="store_true", help="publish without moving LATEST")

    d = commands.add_parser("demo-data", help="write the project's own synthetic demo corpus (CSV)")
    d.add_argument("--output", type=Path, required=True)
    d.add_argument("--rows", type=int, default=600)
    d.add_argument("--seed", type=int, default=7)
    return parser


def run(args: argparse.Namespace) -> object:
    if args.command == "prepare":
        from training.prepare import prepare

        report = prepare(
            args.input,
            args.output,
            min_title_words=args.min_title_words,
            max_article_words=args.max_article_words,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            chunk_rows=args.chunk_rows,
        )
        return {"rows_in": report.rows_in, "rows_out": report.rows_out, "removed": report.removed,
                "train_rows": report.train_rows, "validation_rows": report.validation_rows}
    if args.command == "train":
        from training.train import TrainOptions, train

        options = TrainOptions(
            task=args.task, data=args.data, output=args.output, base=args.base, epochs=args.epochs,
            max_steps=args.max_steps, batch_size=args.batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps, learning_rate=args.learning_rate,
            warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, logging_steps=args.logging_steps,
            eval_steps=args.eval_steps, save_steps=args.save_steps, max_length=args.max_length,
            seed=args.seed, resume=args.resume,
        )
        report = train(options)
        return {k: report[k] for k in ("task", "global_step", "train_loss", "eval_loss", "val_perplexity", "runtime_s")}
    if args.command == "publish":
        from training.publish import publish_model

        manifest = publish_model(
            args.model, bucket=args.bucket, prefix=args.prefix, task=args.task, version=args.version,
            export=args.export, move_latest=not args.no_latest,
        )
        return {"task": manifest.task, "version": manifest.version, "files": len(manifest.files),
                "latest_moved": not args.no_latest}
    if args.command == "demo-data":
        from training.demo_corpus import write_demo_csv

        return {"output": str(write_demo_csv(args.output, rows=args.rows, seed=args.seed)), "rows": args.rows}
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from training.prepare import PrepareError
    from training.train import TrainError

    from botocore.exceptions import BotoCoreError, ClientError

    try:
        summary = run(args)
    except (PrepareError, TrainError, NewsgenError, FileNotFoundError, ValueError) as exc:
        print(f"error: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (ClientError, BotoCoreError) as exc:
        print(f"error: S3: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    print(json.dumps(summary, indent=2, default=str))
