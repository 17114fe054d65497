"""``edgeode train``: train an ODE-Net, RK-Net, ResNet, VGG, the spiral dynamics model, or a series classifier
(ODE-RNN and its GRU baselines on irregular IMU series: :mod:`edgeode.train.series_trainer`).

Writes RUN_DIR with config.json, metrics.json, dataset.json and weights.pt. Runs under
``torchrun --nproc_per_node=K edgeode train ...`` with DistributedDataParallel (gloo, CPU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeode.commands.options import add_out, add_overwrite, add_quiet
from edgeode.errors import did_you_mean
from edgeode.names import ARCHS, DATASETS, SCHEDULES, SERIES_ARCHS, SERIES_DATASETS
from edgeode.tableaus import tableau_names

MODELS = ARCHS
DATA = tuple(sorted(DATASETS))  # listed alphabetically in the help

#: Defaults per data set; any option given on the command line wins.
DEFAULTS: dict[str, dict] = {
    # 8x8 digits: one downsampling conv, 32 channels, ODE on 32x3x3; ~95% test accuracy in well under a minute.
    "digits": {"width": 32, "downsample": 1, "steps": 4, "epochs": 12, "batch_size": 32, "lr": 3e-3},
    # 28x28 MNIST: the paper's network (64 channels, two downsamplings, ODE on 64x7x7).
    "mnist": {"width": 64, "downsample": 2, "steps": 10, "epochs": 2, "batch_size": 128, "lr": 1e-3},
    # Spiral windows of 0.5 time units in 20 intervals (torchdiffeq examples/ode_demo.py setup).
    "spiral": {"steps": 20, "epochs": 30, "batch_size": 20, "lr": 1e-3},
    # Series (ODE-RNN, GRU-dt, GRU): hidden state 32, the field's MLP 32 wide, max solver step = the sampling interval.
    "basicmotions": {"epochs": 10, "batch_size": 8, "lr": 1e-2, "hidden": 32},
    "watch": {"epochs": 20, "batch_size": 32, "lr": 5e-3, "hidden": 32},
}


def _defaults_epilog() -> str:
    lines = ["defaults per data set ('auto' above):"]
    for name, d in DEFAULTS.items():
        lines.append(f"  {name:12s} " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in d.items()))
    lines += ["", "examples:",
              "  edgeode train -o runs/digits-odenet                  # ODE-Net, adjoint, RK4, 8x8 digits",
              "  edgeode train --model rknet -o runs/digits-rknet",
              "  edgeode train --data mnist --data-path ../shared/data/mnist -o runs/mnist-odenet",
              "  edgeode train --model spiral -o runs/spiral",
              "  edgeode train --model odernn --data watch --drop 0.5 -o runs/watch-odernn   # irregular IMU series",
              "  torchrun --nproc_per_node=2 $(which edgeode) train -o runs/ddp"]
    return "\n".join(lines)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a model and write a run directory",
        description=(
            "Train a model and write RUN_DIR (config.json, metrics.json, dataset.json, weights.pt). "
            "The run is built in a temporary directory beside RUN_DIR and renamed into place when done. "
            "Data sets need no download: digits (scikit-learn's bundled 8x8 digits), spiral (generated), "
            "mnist (IDX files in --data-path). Defaults depend on the data set (shown as 'auto'). "
            "For several processes: torchrun --nproc_per_node=K $(which edgeode) train ..."
        ),
        epilog=_defaults_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_out(p, required=True, metavar="RUN_DIR", help="run directory to create")
    add_overwrite(p, "RUN_DIR")
    p.add_argument("--model", default="odenet", metavar="|".join(MODELS + SERIES_ARCHS),
                   help="odenet (ODE-Net, adjoint), rknet (same net, backprop through the solver), resnet, vgg, "
                        "spiral (dynamics), or for IMU series: odernn (ODE-RNN), gru-dt (GRU fed the gaps), gru (GRU on "
                        "the resampled series); default odenet")
    p.add_argument("--data", default=None, metavar="|".join(DATA + SERIES_DATASETS),
                   help="data set; auto: spiral for --model spiral, basicmotions for a series model, else digits")
    p.add_argument("--data-path", default=None, metavar="DIR",
                   help="directory of the MNIST IDX files (t10k-*-ubyte[.gz], optionally train-*); needed for mnist")
    p.add_argument("--solver", default="rk4", metavar="|".join(tableau_names()), help="Runge-Kutta tableau; default rk4 (classic; torchdiffeq's 'rk4' is rk4_38)")
    p.add_argument("--steps", type=int, default=None, help="fixed solver steps over [t0, t1] (auto: per data set)")
    grad = p.add_mutually_exclusive_group()
    grad.add_argument("--adjoint", dest="adjoint", action="store_true", default=None,
                      help="gradients by the adjoint method (default for odenet and spiral)")
    grad.add_argument("--backprop", dest="adjoint", action="store_false",
                      help="gradients by backprop through the solver (default for rknet)")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training set (auto: per data set)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="global batch size (split across torchrun processes) (auto: per data set)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (the peak one with --schedule onecycle) "
                                                           "(auto: per data set)")
    p.add_argument("--schedule", default="constant", metavar="|".join(SCHEDULES),
                   help="learning-rate schedule: constant, or onecycle (warm-up then cosine decay); default constant")
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay; default 0")
    p.add_argument("--reg", default=None, metavar="kinetic=W,jacobian=W",
                   help="penalise the ODE block's solve for cheap few-step solves (Finlay et al. 2020): kinetic energy "
                        "and/or Jacobian Frobenius norm, each with its weight, on the same tableau and steps; gradients "
                        "by backprop through the solver (the default once --reg is given) or, with --adjoint, by the "
                        "adjoint method with the penalties as quadratures of the augmented state")
    p.add_argument("--random-steps", default=None, metavar="LO:HI",
                   help="draw each training batch's solver step count uniformly from LO..HI (seeded; the fixed-step "
                        "analogue of STEER's random end time, Ghosh et al. 2020) on the same tableau; evaluation and "
                        "export use --steps")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data split and data order; default 0")
    p.add_argument("--width", type=int, default=None, help="channels of the conv models (auto: 32 digits, 64 mnist)")
    p.add_argument("--downsample", type=int, default=None,
                   help="stride-2 downsampling convs before the ODE/res blocks (auto: 1 digits, 2 mnist)")
    p.add_argument("--res-blocks", type=int, default=6, help="residual blocks of --model resnet; default 6")
    p.add_argument("--vgg-widths", default=None, metavar="W1,W2,...",
                   help="channels per VGG stage (auto: 32,64 for digits, 64,128,256 for mnist)")
    p.add_argument("--hidden", type=int, default=None,
                   help="hidden units of the spiral field (default 50) or of a series model's state (default 32)")
    p.add_argument("--drop", type=float, default=0.0, metavar="FRACTION",
                   help="series data: remove this seeded random fraction of every series' time points, keeping the "
                        "real timestamps of the rest (e.g. 0.5, 0.8); default 0")
    p.add_argument("--burst", action="store_true",
                   help="series data: remove the --drop fraction in runs of consecutive samples (packet loss)")
    p.add_argument("--max-step", type=float, default=None, metavar="SECONDS",
                   help="series ODE-RNN: largest solver step across a gap (auto: the data's sampling interval)")
    p.add_argument("--t1", type=float, default=None, help="end time of the ODE block (auto: 1, 0.5 for spiral)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (auto: all cores, shared among torchrun processes; "
                        "1 for models under 100k parameters, where threads only add overhead)")
    p.add_argument("--train-limit", type=int, default=None, metavar="N",
                   help="train on only the first N training examples (smoke tests); the test split is unchanged")
    add_quiet(p)
    p.set_defaults(func=run)
    return p


def build_config(args: argparse.Namespace):
    """Turn parsed arguments into a validated TrainConfig (imports torch)."""
    from edgeode.errors import ConfigError
    from edgeode.train.checkpoint import TrainConfig
    from edgeode.train.data import SPIRAL_POINTS, SPIRAL_T_END, SPIRAL_WINDOW
    from edgeode.train.models import ModelConfig

    if args.model not in MODELS:
        raise ConfigError(f"unknown --model {args.model!r}{did_you_mean(args.model, MODELS)}; choose one of: {', '.join(MODELS)}")
    data = args.data or ("spiral" if args.model == "spiral" else "digits")
    if data not in DATA:
        raise ConfigError(f"unknown --data {data!r}{did_you_mean(data, DATA)}; choose one of: {', '.join(DATA)}")
    if args.data_path and data != "mnist":
        raise ConfigError(f"--data-path is read only with --data mnist, but the data set is {data!r} (it ships or is "
                          "generated); drop --data-path, or pass --data mnist to train on the IDX files there")
    d = DEFAULTS[data]

    def pick(name: str):
        value = getattr(args, name)
        if value is not None:
            return value
        return d.get(name, DEFAULTS["mnist"].get(name))  # spiral has no conv options: any valid value

    from edgeode.train.regularisers import Regularisation, parse_reg

    reg = parse_reg(args.reg) if args.reg is not None else Regularisation()
    from edgeode.train.random_steps import parse_step_range

    random_steps = parse_step_range(args.random_steps).to_list() if args.random_steps is not None else None
    adjoint = args.adjoint
    if adjoint is None:  # --reg differentiates by backprop through the solve unless --adjoint (regularisers.py)
        adjoint = args.model in ("odenet", "spiral") and not reg.active
    if args.model == "rknet" and adjoint:
        raise ConfigError("--model rknet means backprop through the solver; use --model odenet for --adjoint")
    if data == "spiral":
        image_size, in_channels, num_classes = 1, 1, 1
        t1 = args.t1 if args.t1 is not None else SPIRAL_WINDOW * SPIRAL_T_END / (SPIRAL_POINTS - 1)
    else:
        image_size, in_channels, num_classes = (8 if data == "digits" else 28), 1, 10
        t1 = args.t1 if args.t1 is not None else 1.0
    if args.vgg_widths is not None:
        try:
            vgg = tuple(int(w) for w in args.vgg_widths.split(","))
        except ValueError:
            raise ConfigError(f"--vgg-widths must be comma-separated integers like 32,64, got {args.vgg_widths!r}") from None
    else:
        vgg = (32, 64) if data == "digits" else (64, 128, 256)
    model = ModelConfig(
        arch=args.model, in_channels=in_channels, image_size=image_size, num_classes=num_classes,
        width=pick("width"), downsample=pick("downsample"), res_blocks=args.res_blocks, vgg_widths=vgg,
        solver=args.solver, steps=pick("steps"), t0=0.0, t1=t1, adjoint=bool(adjoint),
        hidden=args.hidden if args.hidden is not None else 50,
    )
    # stored absolute so that load_run -> load_dataset works from any working directory
    data_path = str(Path(args.data_path).expanduser().absolute()) if args.data_path else None
    return TrainConfig(model=model, data=data, data_path=data_path, epochs=pick("epochs"),
                       batch_size=pick("batch_size"), lr=pick("lr"), seed=args.seed,
                       weight_decay=args.weight_decay, threads=args.threads,
                       train_limit=args.train_limit, schedule=args.schedule, reg_kinetic=reg.kinetic,
                       reg_jacobian=reg.jacobian, random_steps=random_steps)


def build_series_config(args: argparse.Namespace):
    """A validated SeriesTrainConfig for ``--model odernn|gru-dt|gru --data basicmotions|watch`` (imports torch)."""
    from edgeode.errors import ConfigError
    from edgeode.train.series_data import load_series_dataset
    from edgeode.train.series_models import SeriesModelConfig
    from edgeode.train.series_trainer import SeriesTrainConfig

    data = args.data or "basicmotions"
    if args.model not in SERIES_ARCHS or data not in SERIES_DATASETS:
        raise ConfigError(f"--model {args.model} and --data {data} do not go together: the series models "
                          f"({', '.join(SERIES_ARCHS)}) train on the series data sets ({', '.join(SERIES_DATASETS)}), the "
                          "others on images or the spiral")
    for flag, value, default in (("--data-path", args.data_path, None), ("--steps", args.steps, None),
                                 ("--adjoint", args.adjoint, None), ("--reg", args.reg, None),
                                 ("--random-steps", args.random_steps, None)):
        if value is not default:
            raise ConfigError(f"{flag} does not apply to series models (the solver's steps follow each gap and "
                              "--max-step; gradients are backprop through the solver)")
    d = DEFAULTS[data]
    info = load_series_dataset(data)  # channels, classes and the sampling interval (a second, numpy only)
    max_step = args.max_step if args.max_step is not None else info.sample_interval
    hidden = args.hidden if args.hidden is not None else d["hidden"]
    model = SeriesModelConfig(arch=args.model, channels=len(info.channels), num_classes=info.num_classes,
                              hidden=hidden, field_hidden=hidden, solver=args.solver, max_step=max_step)
    return SeriesTrainConfig(model=model, data=data, drop=args.drop, burst=args.burst,
                             epochs=args.epochs or d["epochs"], batch_size=args.batch_size or d["batch_size"],
                             lr=args.lr or d["lr"], seed=args.seed, threads=args.threads or 1,
                             train_limit=args.train_limit)


def _is_series(args: argparse.Namespace) -> bool:
    return args.model in SERIES_ARCHS or args.data in SERIES_DATASETS


def run(args: argparse.Namespace) -> int:
    from edgeode.train.trainer import train

    if _is_series(args):
        from edgeode.train.series_trainer import train_series

        series = train_series(build_series_config(args), args.out, progress=not args.quiet, overwrite=args.overwrite)
        summary = {k: series.metrics[k] for k in ("test_accuracy", "test_loss", "train_time_s", "parameters")}
        print(f"wrote {series.run_dir}: {json.dumps(summary)}")
        return 0
    config = build_config(args)
    result = train(config, args.out, progress=not args.quiet, overwrite=args.overwrite)
    if result.run_dir is not None:
        summary = {k: v for k, v in result.metrics.items()
                   if k in ("test_accuracy", "test_loss", "train_time_s", "parameters")}
        print(f"wrote {result.run_dir}: {json.dumps(summary)}")
    return 0
