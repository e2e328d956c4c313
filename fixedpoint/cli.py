"""``stllr int-train`` and ``stllr int-eval``: on-chip training and inference of the
integer model (registered into ``stllr``'s parser by :func:`add_int_commands`).

    stllr int-train --config CFG.yaml --out DIR [--resume] [--from-checkpoint FLOAT.pt]
                    [--epochs N] [--seed S] [--quiet]
    stllr int-eval  --checkpoint DIR/checkpoint.npz --config CFG.yaml

Both print the overflow summary (saturate/wrap events per tensor) and, as the last
stdout line, a JSON object. Bad input (config, ``quant:`` formats, constants that a
format cannot hold, data, checkpoints) raises :class:`~core.errors.InputError`, which
``stllr``'s ``main`` prints as one line with exit code 2, before any output directory
is created.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.errors import Parser


def _with_overrides(config, args):
    """--epochs / --seed (train.seed only, as ``stllr train --seed``), re-validated."""
    from core.config import with_overrides

    return with_overrides(config, {"train.epochs": args.epochs, "train.seed": args.seed})


def _int_train(args) -> int:
    from core.config import load_config
    from stllr.train import describe_network

    from fixedpoint.train import int_train

    config = _with_overrides(load_config(args.config), args)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    log(f"integer {config.learning.rule} on {describe_network(config)}")
    source = Path(args.from_checkpoint) if args.from_checkpoint else None
    metrics = int_train(config, Path(args.out), resume=args.resume, from_checkpoint=source, log=log,
                        report=lambda text: print(text, flush=True))
    print(json.dumps({"final_test_accuracy": metrics.get("final_test_accuracy"), "model": "integer",
                      "rule": metrics["rule"],
                      "overflow_events": metrics.get("overflow", {}).get("train", {}).get("total_events", 0),
                      "wall_time_s": round(metrics["wall_time_s"], 2), "out": str(args.out)}))
    return 0


def _int_eval(args) -> int:
    from core.config import load_config

    from fixedpoint.train import int_eval

    config = load_config(args.config)
    result, overflow = int_eval(config, Path(args.checkpoint))
    print("overflow summary, test inference:")
    print(overflow.summary())
    print(json.dumps(result))
    return 0


def add_int_commands(commands) -> None:
    """Add ``int-train`` and ``int-eval`` to an argparse sub-parsers object."""
    train = commands.add_parser("int-train", help="on-chip S-TLLR training of the bit-accurate integer model")
    train.add_argument("--config", required=True, help="YAML config with a quant: section (defaults if absent)")
    train.add_argument("--out", required=True, help="output directory (checkpoint.npz, metrics.json)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    train.add_argument("--from-checkpoint", help="start from the weights of a float checkpoint.pt (fine-tuning)")
    train.add_argument("--epochs", type=int, help="override train.epochs")
    train.add_argument("--seed", type=int, help="override train.seed")
    train.add_argument("--quiet", action="store_true", help="no per-epoch lines (the overflow summary still prints)")
    train.set_defaults(handler=_int_train)
    evaluate = commands.add_parser("int-eval", help="integer inference accuracy + overflow report of a checkpoint")
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint.npz written by int-train")
    evaluate.add_argument("--config", required=True)
    evaluate.set_defaults(handler=_int_eval)


def build_parser() -> argparse.ArgumentParser:
    """A parser with just the integer commands (``python -m fixedpoint.cli``)."""
    parser = Parser(prog="stllr", description="Integer (bit-accurate) S-TLLR")
    add_int_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.errors import run_cli

    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
