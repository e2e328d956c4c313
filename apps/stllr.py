"""``stllr`` command line: train and evaluate the float model.

    stllr train --config CFG.yaml --out DIR [--resume] [--epochs N] [--seed S] [--rule R]
    stllr eval  --checkpoint DIR/checkpoint.pt --config CFG.yaml
    stllr sweep run SPEC.yaml --out DIR [--workers N | --scheduler tcp://HOST:PORT]   (sweep/cli.py)
    stllr sweep report DIR [--csv | --json]

Bad input (config, data file, checkpoint) prints one line naming the field or file to
stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import Parser, run_cli


def _overrides(config, args):
    """--epochs, --seed, --rule, re-validated by the schema."""
    from core.config import with_overrides

    return with_overrides(config, {"train.epochs": args.epochs, "train.seed": args.seed,
                                   "learning.rule": args.rule})


def _train(args) -> int:
    from core.config import load_config
    from stllr.train import describe_network, train

    config = _overrides(load_config(args.config), args)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    log(f"{config.learning.rule} on {describe_network(config)}")
    metrics = train(config, Path(args.out), resume=args.resume, log=log)
    print(json.dumps({"final_test_accuracy": metrics["final_test_accuracy"], "rule": metrics["rule"],
                      "wall_time_s": round(metrics["wall_time_s"], 2), "out": str(args.out)}))
    return 0


def _eval(args) -> int:
    from core.config import load_config
    from stllr.data import load_test_data
    from stllr.train import build_network, check_data_matches, evaluate, load_checkpoint, load_weights

    config = load_config(args.config)
    checkpoint = load_checkpoint(Path(args.checkpoint), config)
    test_set = load_test_data(config.data)
    check_data_matches(config, test_set, "data.test")
    net = build_network(config)
    load_weights(net, checkpoint, args.checkpoint)
    stats = evaluate(net, test_set)
    print(json.dumps({"test_accuracy": stats.accuracy, "test_loss": stats.loss, "samples": test_set.num_samples}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="stllr", description="Float S-TLLR / BPTT training of spiking networks")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a network from a YAML config")
    train.add_argument("--config", required=True, help="YAML config (network, learning, train, data)")
    train.add_argument("--out", required=True, help="output directory (checkpoint.pt, metrics.json)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--epochs", type=int, help="override train.epochs")
    train.add_argument("--seed", type=int, help="override train.seed")
    train.add_argument("--rule", choices=["stllr", "bptt", "readout_only"], help="override learning.rule")
    train.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    train.set_defaults(handler=_train)
    evaluate = commands.add_parser("eval", help="test accuracy of a checkpoint")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--config", required=True)
    evaluate.set_defaults(handler=_eval)
    from fixedpoint.cli import add_int_commands  # int-train, int-eval (integer model)

    add_int_commands(commands)
    from sweep.cli import add_sweep_commands  # sweep run, sweep report (Dask co-design sweeps)

    add_sweep_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
