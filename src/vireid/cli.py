"""The `vireid` command: one entry point with sub-commands.

Thin by design: each sub-command parses its flags, builds a config and calls the library. Mistakes a
user can fix (a wrong path, an unknown setting, a malformed file) end in one line on stderr and exit
status 2, without a stack trace.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from vireid import __version__
from vireid.data.registry import dataset_names
from vireid.errors import VireidError


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by every command that trains (train, demo)."""
    p.add_argument("--preset", default=None, help="packaged preset: sysu, regdb, llcm, demo, smoke, bench")
    p.add_argument("--config", default=None, metavar="FILE", help="a YAML file applied after the preset")
    p.add_argument("--output", default=None, metavar="DIR", help="run folder (config, logs, checkpoints, plots)")
    p.add_argument("--seed", type=int, default=None, help="one seed for every random choice")
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels; resume reproduces a run")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default: auto (CUDA when present)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    p.add_argument("--profile", choices=("paper", "reference"), default=None,
                   help="paper (default) or the released code's choices (docs/method.md §6)")
    p.add_argument("--stages", default=None, help="comma-separated subset of cmc,mmlm,sca (default: all)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. cmc.phase1_epochs=10 sca.lambda_inter=0.1")


def _training_config(args: argparse.Namespace, default_preset: str | None):
    from vireid.config import load_config

    overrides = list(args.overrides)
    for key, value in (("seed", args.seed), ("device", args.device), ("output", args.output),
                       ("profile", args.profile)):
        if value is not None:
            overrides.insert(0, f"{key}={value}")
    if args.deterministic:
        overrides.insert(0, "deterministic=true")
    if args.stages:
        overrides.insert(0, f"stages=[{args.stages}]")
    for key, attr in (("data.dataset", "dataset"), ("data.root", "data_root")):
        value = getattr(args, attr, None)
        if value is not None:
            overrides.insert(0, f"{key}={value}")
    return load_config(args.preset or default_preset, overrides, file=args.config)


def cmd_train(args: argparse.Namespace) -> int:
    import vireid.demo  # noqa: F401 - registers the `synthetic` start weights of the demo preset
    from vireid.engine.pipeline import train

    cfg = _training_config(args, default_preset=args.dataset)
    train(cfg, resume=args.resume)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vireid.demo.command import run_demo

    cfg = _training_config(args, default_preset="demo")
    run_demo(cfg, data_dir=args.data, resume=args.resume)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from vireid.data.synthetic import generate_synthetic

    out = generate_synthetic(args.out, layout=args.layout, ids=args.ids,
                             images_per_camera=args.images_per_camera, height=args.height,
                             width=args.width, seed=args.seed, workers=args.workers,
                             test_fraction=args.test_fraction, overwrite=args.force)
    print(f"wrote a synthetic {args.layout} dataset to {out}")
    if args.contact_sheet:
        from vireid.data.synthetic import contact_sheet

        print(f"contact sheet: {contact_sheet(out, args.contact_sheet)}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from vireid.data.registry import open_dataset

    print(open_dataset(args.dataset, args.data_root, trial=args.trial).describe())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vireid.evaluation.report import format_table

    if bool(args.features) == bool(args.checkpoint):
        raise VireidError("give exactly one of --features FILE.npz or --checkpoint CKPT")
    if args.features:
        from vireid.evaluation.feature_file import evaluate_feature_file

        from vireid.data.registry import reader_class

        results = {args.protocol: evaluate_feature_file(args.features, reader_class(args.protocol).metric_protocol)}
    else:
        if not (args.dataset and args.data_root):
            raise VireidError(f"--checkpoint needs --dataset {'|'.join(dataset_names())} and --data-root DIR")
        from vireid.engine.evaluate import evaluate_checkpoint

        results = evaluate_checkpoint(args.checkpoint, args.dataset, args.data_root, trial=args.trial,
                                      trials=args.trials, device=args.device, batch_size=args.batch_size)
    print(format_table(results))
    if args.plots:
        from vireid.viz import plot_cmc

        path = plot_cmc({name: res["cmc"] for name, res in results.items()}, Path(args.plots) / "cmc.png")
        print(f"wrote {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    from vireid.engine.rematch import recompute_matching

    if bool(args.run) == bool(args.features):
        raise VireidError("give exactly one of --run RUN_DIR or --features FILE.npz")
    print(recompute_matching(run_dir=args.run, features=args.features, n_memories=args.n_memories,
                        assignment=args.assignment, device=args.device))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vireid.export import export_onnx

    out = args.out or str(Path(args.checkpoint).with_suffix(f".{args.modality}.onnx"))
    report = export_onnx(args.checkpoint, out, modality=args.modality)
    print(f"wrote {out}; max |onnxruntime - torch| = {report['max_abs_diff']:.2e}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from vireid.gallery_search import search_gallery

    search_gallery(args.checkpoint, args.query, args.query_modality, args.gallery, args.gallery_modality,
                   topk=args.topk, out=args.out, device=args.device)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vireid.viz.report import write_report

    print(write_report(args.runs, args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vireid",
        description="Unsupervised visible-infrared person re-identification with MMM "
                    "(Multi-Memory Matching, ECCV 2024): cluster, match across modalities, align, evaluate.",
        epilog="Run `vireid COMMAND --help` for the flags of one command.")
    parser.add_argument("--version", action="version", version=f"vireid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="synthetic data + the whole MMM pipeline on CPU, in minutes")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="where the synthetic dataset lives (generated if absent; default ~/.cache/vireid/demo-data)")
    _add_training_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="write a synthetic visible-infrared dataset in the SYSU-MM01 or RegDB layout")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--layout", choices=("sysu", "regdb"), default="sysu")
    p.add_argument("--ids", type=int, default=60, help="number of identities")
    p.add_argument("--images-per-camera", type=int, default=None,
                   help="images per person and camera (default: 6 for sysu, 10 per modality for regdb)")
    p.add_argument("--test-fraction", type=float, default=0.5, help="share of identities held out for testing")
    p.add_argument("--contact-sheet", default=None, metavar="PNG", help="also draw a few identities into PNG")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes drawing images")
    p.add_argument("--force", action="store_true", help="replace a synthetic dataset in --out made with other parameters")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train CMC -> MMLM -> SCA on a dataset and evaluate")
    p.add_argument("--dataset", choices=dataset_names(), default=None)
    p.add_argument("--data-root", default=None, metavar="DIR")
    _add_training_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate saved features or a checkpoint with the standard protocols")
    p.add_argument("--features", default=None, metavar="FILE.npz",
                   help="arrays query_/gallery_ features, pids, camids (cosine distance)")
    p.add_argument("--protocol", choices=dataset_names(), default="sysu",
                   help="the dataset whose ranking rules apply to --features")
    p.add_argument("--checkpoint", default=None, metavar="CKPT")
    p.add_argument("--dataset", choices=dataset_names(), default=None)
    p.add_argument("--data-root", default=None, metavar="DIR")
    p.add_argument("--trial", type=int, default=None, help="RegDB split (default: the checkpoint's)")
    p.add_argument("--trials", type=int, default=10, help="gallery draws for SYSU-MM01 / LLCM")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--plots", default=None, metavar="DIR", help="also draw the CMC curves into DIR/cmc.png")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="print a dataset's statistics")
    p.add_argument("--dataset", choices=dataset_names(), required=True)
    p.add_argument("--data-root", required=True, metavar="DIR")
    p.add_argument("--trial", type=int, default=1, help="RegDB split")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("match", help="recompute and report MMLM's visible-infrared cluster matching")
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="a run folder with pseudo-labels and features")
    p.add_argument("--features", default=None, metavar="FILE.npz",
                   help="arrays features_visible, labels_visible, features_infrared, labels_infrared "
                        "(optional pids_visible, pids_infrared)")
    p.add_argument("--n-memories", type=int, default=None, help="default: the run's mmlm.n_memories, else 4")
    p.add_argument("--assignment", choices=("hungarian", "nearest"), default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.set_defaults(func=cmd_match)

    p = sub.add_parser("report", help="one self-contained HTML page explaining and comparing finished runs")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="finished run folders; the others' config differences are listed against the first")
    p.add_argument("--out", default="report.html", metavar="FILE.html")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export a checkpoint's stem and trunk to ONNX (with a parity check)")
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--modality", choices=("visible", "infrared"), default="visible")
    p.add_argument("--out", default=None, metavar="FILE.onnx")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("search", help="rank a gallery for query images and draw the ranked lists")
    p.add_argument("--checkpoint", required=True, metavar="CKPT")
    p.add_argument("--query", required=True, metavar="IMG_OR_DIR")
    p.add_argument("--query-modality", choices=("visible", "infrared"), default="infrared")
    p.add_argument("--gallery", required=True, metavar="DIR")
    p.add_argument("--gallery-modality", choices=("visible", "infrared"), default="visible")
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--out", default="search.png", metavar="FILE.png", help="picture; scores go next to it as JSON")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.set_defaults(func=cmd_search)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # KEY=VALUE overrides may come anywhere, also after flags (`... cmc.lr=1e-4 --resume sca.epochs=20`),
    # which plain argparse refuses once the positional list has been consumed.
    args, extra = parser.parse_known_args(argv)
    if extra:
        stray = [a for a in extra if a.startswith("-") or "=" not in a]
        if stray or not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
        args.overrides = list(args.overrides) + extra
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return func(args)
    except VireidError as err:
        print(f"vireid {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vireid {args.command}: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
