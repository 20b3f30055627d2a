"""`python -m training <command>`: newsgen's models from CSV to S3 (`--help` lists the commands).

Errors in the user's input end with one line naming the problem (exit 2), not a traceback.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
from pathlib import Path

from newsgen.artifacts import EXPORTS
from newsgen.errors import NewsgenError
from newsgen.prompt import Task
from training.demo_corpus import DEFAULT_ROWS, DEFAULT_SEED
from training.tokenizer import TINY

TASKS = [task.value for task in Task]


class HelpFormatter(argparse.HelpFormatter):
    """`--help` shows every option's default, also of options without a help text (an unset option's
    effect is part of the command: `prepare --min-title-words` drops rows). A default of None or False
    means "unset" and is not shown, nor is one the help text already describes."""

    def _format_action(self, action: argparse.Action) -> str:
        shown = action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
        if shown and "default" not in (action.help or ""):
            action = copy.copy(action)
            action.help = f"{action.help or ''} (default: %(default)s)".strip()
        return super()._format_action(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="newsgen's models: clean data, train, distil, sample, publish to S3, manage versions.",
        formatter_class=HelpFormatter,
    )
    # The command list in --help is argparse's, built from the subparsers below, so it cannot drift.
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        title="commands",
        metavar="<command>",
        parser_class=functools.partial(argparse.ArgumentParser, formatter_class=HelpFormatter),
    )

    p = commands.add_parser("prepare", help="clean news corpora (CSV, JSONL, Parquet) into train/validation JSONL")
    p.add_argument("--input", nargs="+", type=Path, required=True, help="one or more CSV, JSONL or Parquet files")
    p.add_argument("--format", default=None, help="csv, jsonl or parquet (default: each file's extension)")
    p.add_argument(
        "--columns",
        default=None,
        help="your column names for ours, e.g. title=headline,content=body,publication=source "
        "(default: All-the-News' title, content, publication; publication is optional)",
    )
    p.add_argument(
        "--publication-names",
        default=None,
        help='outlet names to strip from titles, comma-separated ("The Harbor Ledger,Valley Courier"): for '
        "inputs without a publication column",
    )
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--min-title-words", type=int, default=8)
    p.add_argument("--max-article-words", type=int, default=100)
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--chunk-rows", type=int, default=10_000, help="rows read at a time (memory stays flat)")

    t = commands.add_parser("train", help="fine-tune a headline or article model with the HF Trainer")
    t.add_argument("--task", choices=TASKS, required=True)
    t.add_argument("--data", type=Path, required=True, help="a directory written by `prepare`")
    t.add_argument("--base", default=TINY, help="tiny (from scratch), distilgpt2, gpt2 or a local checkpoint")
    t.add_argument("--output", type=Path, required=True)
    t.add_argument(
        "--compact-vocab",
        action="store_true",
        help="with --base tiny: train over only the tokens the corpus uses (far faster on a CPU)",
    )
    add_trainer_arguments(t)

    k = commands.add_parser("distill", help="distil a trained model into a student with fewer layers")
    k.add_argument("--teacher", type=Path, required=True, help="the --output of `train`")
    k.add_argument("--data", type=Path, required=True, help="a directory written by `prepare`")
    k.add_argument("--output", type=Path, required=True)
    k.add_argument("--task", choices=TASKS, default=None, help="default: the teacher's")
    k.add_argument("--student-layers", type=int, default=None, help="default: half the teacher's, at least 1")
    k.add_argument(
        "--student-init",
        default="teacher",
        help="teacher (its embeddings and evenly spaced blocks), or a local checkpoint / hub name",
    )
    k.add_argument("--alpha", type=float, default=0.5, help="weight of the KL term (soft targets)")
    k.add_argument("--beta", type=float, default=0.5, help="weight of the cross-entropy term (labels)")
    k.add_argument("--temperature", type=float, default=2.0)
    k.add_argument("--cosine-weight", type=float, default=0.0, help="weight of the hidden-state cosine term")
    add_trainer_arguments(k, learning_rate_help="default: the teacher's")

    s = commands.add_parser("sample", help="generate from a local checkpoint with the serving code")
    s.add_argument("--model", type=Path, required=True, help="the --output of `train` or `distill`")
    s.add_argument("--prompt", default="", help="how a headline starts (an article model: the headline)")
    s.add_argument("--headline", default=None, help="write an article opening for this headline")
    s.add_argument("--n", type=int, default=3)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--max-new-tokens", type=int, default=None, help="default: the model's generation_config")
    s.add_argument(
        "--compare-decoding",
        action="store_true",
        help="one text each under greedy, beam search, top-k, top-p and two temperatures",
    )

    u = commands.add_parser("publish", help="upload a trained model to S3 as a new version")
    u.add_argument("--model", type=Path, required=True, help="the --output of `train`")
    u.add_argument("--bucket", required=True)
    u.add_argument("--prefix", default="models")
    u.add_argument("--task", choices=TASKS, required=True)
    u.add_argument("--version", default=None, help="default: the UTC time, e.g. 20261128T091500Z")
    u.add_argument(
        "--export",
        choices=EXPORTS,
        default="fp32",
        help="int8: the quantised weights the server runs (a quarter smaller, loaded without quantising)",
    )
    u.add_argument("--no-latest", action="store_true", help="publish without moving LATEST")

    r = commands.add_parser("set-latest", help="point a task's LATEST at a published version (roll back or forward)")
    r.add_argument("--bucket", required=True)
    r.add_argument("--prefix", default="models")
    r.add_argument("--task", choices=TASKS, required=True)
    r.add_argument("--version", required=True)

    v = commands.add_parser("versions", help="list a task's published versions (created_at, metrics) and LATEST")
    v.add_argument("--task", choices=TASKS, required=True)
    v.add_argument("--bucket", default=os.environ.get("MODEL_BUCKET") or None, help="default: $MODEL_BUCKET")
    v.add_argument(
        "--prefix", default=os.environ.get("MODEL_PREFIX") or "models", help="default: $MODEL_PREFIX or models"
    )

    m = commands.add_parser("mirror", help="copy published models into a local directory (to bake into an image)")
    m.add_argument("--bucket", required=True)
    m.add_argument("--prefix", default="models")
    m.add_argument("--output", type=Path, required=True, help="e.g. infra/lambda/baked")
    for task in Task:
        m.add_argument(f"--{task}-version", default=None, help="default: LATEST")

    w = commands.add_parser("detect", help="check texts for the watermark (needs the deployment's keyring)")
    source = w.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one text")
    source.add_argument("--file", type=Path, help="a file: one text, or one per line with --lines")
    w.add_argument("--lines", action="store_true", help="with --file: each non-blank line is a text")
    keys = w.add_mutually_exclusive_group(required=True)
    keys.add_argument("--keys-file", type=Path, help="a keyring file (make run's: .newsgen/watermark-keys.json)")
    keys.add_argument("--keys-secret", help="a deployed stack's WatermarkKeysSecret output (Secrets Manager)")
    keys.add_argument("--keys-parameter", help="the SSM SecureString parameter of a stack deployed with one")
    w.add_argument(
        "--model",
        type=Path,
        default=None,
        help="an fp32 article model directory: score only the tokens where it had a choice, as /v1/detect does "
        "(default: every token, with GPT-2's tokenizer and newsgen's special tokens)",
    )

    g = commands.add_parser("watermark-keys", help="print a new watermark keyring, or one with a new current key")
    g.add_argument(
        "--rotate",
        type=Path,
        default=None,
        help="an existing keyring file: its keys stay (for detection), a new one becomes current",
    )

    commands.add_parser("pipeline", help="the whole GPU training job, set by env vars (training/pipeline.py)")

    d = commands.add_parser("demo-data", help="write the project's own synthetic demo corpus (CSV)")
    d.add_argument("--output", type=Path, required=True)
    d.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    d.add_argument("--seed", type=int, default=DEFAULT_SEED)
    return parser


def add_trainer_arguments(p: argparse.ArgumentParser, learning_rate_help: str | None = None) -> None:
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=-1, help="overrides --epochs when > 0")
    p.add_argument("--batch-size", type=int, default=8, help="per device")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=None, help=learning_rate_help)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument("--save-steps", type=int, default=100)
    p.add_argument("--max-length", type=int, default=None, help="tokens per example")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")


def trainer_options(args: argparse.Namespace) -> dict:
    names = (
        "task",
        "data",
        "output",
        "epochs",
        "max_steps",
        "batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "warmup_steps",
        "weight_decay",
        "logging_steps",
        "eval_steps",
        "save_steps",
        "max_length",
        "seed",
        "resume",
    )
    return {name: getattr(args, name) for name in names}


RUN_SUMMARY = ("task", "global_step", "train_loss", "eval_loss", "val_perplexity", "runtime_s")


def run(args: argparse.Namespace) -> object:
    if args.command == "prepare":
        from training.prepare import parse_columns, parse_names, prepare

        report = prepare(
            args.input,
            args.output,
            min_title_words=args.min_title_words,
            max_article_words=args.max_article_words,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            chunk_rows=args.chunk_rows,
            input_format=args.format,
            columns=parse_columns(args.columns),
            publication_names=parse_names(args.publication_names),
        )
        return {
            "formats": report.formats,
            "columns": report.columns,
            "publication_rule": report.publication_rule,
            "rows_in": report.rows_in,
            "rows_out": report.rows_out,
            "removed": report.removed,
            "train_rows": report.train_rows,
            "validation_rows": report.validation_rows,
        }
    if args.command == "train":
        from training.train import TrainOptions, train

        report = train(TrainOptions(base=args.base, compact_vocab=args.compact_vocab, **trainer_options(args)))
        return {k: report[k] for k in RUN_SUMMARY}
    if args.command == "distill":
        from training.distill import DistillOptions, distill

        report = distill(
            DistillOptions(
                teacher=args.teacher,
                student_layers=args.student_layers,
                student_init=args.student_init,
                alpha=args.alpha,
                beta=args.beta,
                temperature=args.temperature,
                cosine_weight=args.cosine_weight,
                **trainer_options(args),
            )
        )
        return {k: report[k] for k in RUN_SUMMARY} | {"student_layers": report["distillation"]["student_layers"]}
    if args.command == "sample":
        from training.sample import compare_decoding, sample

        if args.compare_decoding:
            return compare_decoding(
                args.model,
                prompt=args.prompt,
                headline=args.headline,
                seed=args.seed,
                max_new_tokens=args.max_new_tokens,
            )
        return sample(
            args.model,
            prompt=args.prompt,
            headline=args.headline,
            n=args.n,
            seed=args.seed,
            max_new_tokens=args.max_new_tokens,
        )
    if args.command == "publish":
        from training.publish import publish_model

        manifest = publish_model(
            args.model,
            bucket=args.bucket,
            prefix=args.prefix,
            task=args.task,
            version=args.version,
            export=args.export,
            move_latest=not args.no_latest,
        )
        return {
            "task": manifest.task,
            "version": manifest.version,
            "files": len(manifest.files),
            "latest_moved": not args.no_latest,
        }
    if args.command == "set-latest":
        from newsgen import artifacts, s3

        client = s3.client()
        previous = artifacts.read_latest(client, bucket=args.bucket, prefix=args.prefix, task=args.task)
        artifacts.set_latest(client, bucket=args.bucket, prefix=args.prefix, task=args.task, version=args.version)
        return {"task": args.task, "latest": args.version, "previous": previous}
    if args.command == "versions":
        from newsgen import s3
        from training.publish import published_versions

        if not args.bucket:
            raise ValueError("versions: set --bucket or MODEL_BUCKET (make run prints the local one)")
        return published_versions(s3.client(), bucket=args.bucket, prefix=args.prefix, task=args.task)
    if args.command == "mirror":
        from newsgen import s3
        from training.mirror import mirror

        versions = {task: getattr(args, f"{task}_version") for task in Task}
        mirrored = mirror(s3.client(), bucket=args.bucket, prefix=args.prefix, dest=args.output, versions=versions)
        return {
            "output": str(args.output),
            "versions": mirrored,
            "serve_with": "MODEL_BUCKET=file:///opt/newsgen/baked (in the image built with BAKED_MODELS)",
        }
    if args.command == "detect":
        from training.detect import detect

        texts = [args.text] if args.text is not None else None
        if texts is None:
            content = args.file.read_text(encoding="utf-8")
            texts = [line for line in content.splitlines() if line.strip()] if args.lines else [content]
        return detect(
            texts,
            keys_file=args.keys_file,
            keys_parameter=args.keys_parameter,
            keys_secret=args.keys_secret,
            model=args.model,
        )
    if args.command == "watermark-keys":
        from newsgen import watermark

        existing = watermark.parse_keyring(args.rotate.read_text(), str(args.rotate)) if args.rotate else None
        return watermark.keyring_with_new_key(existing).model_dump()
    if args.command == "pipeline":
        from training.pipeline import run_job

        return run_job()
    if args.command == "demo-data":
        from training.demo_corpus import write_demo_csv

        return {"output": str(write_demo_csv(args.output, rows=args.rows, seed=args.seed)), "rows": args.rows}
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    from training.prepare import PrepareError
    from training.train import TrainError

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
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun every rank runs the command; the summary is printed once, by rank 0
    # `sample` answers with text to read; the other commands with a JSON summary.
    print(summary if isinstance(summary, str) else json.dumps(summary, indent=2, default=str))
