"""The `vireid` command: one entry point with sub-commands.

Thin by design: each sub-command parses its flags, checks that its outputs can be written, builds a
config and calls the library. Results (tables, "wrote FILE" lines) go to stdout; progress and logs to
stderr. Exit status: 0 done; 2 a mistake a user can fix (a wrong path, an unknown setting, a
malformed file), told in one line on stderr without a stack trace; 3 the run could not train (e.g.
no clusters), told the same way; 130 interrupted; 1 an unexpected error, whose traceback goes to a
crash log named in one line.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import textwrap
import traceback
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from vireid import __version__
from vireid.data.registry import dataset_names, reader_class
from vireid.errors import RunStoppedError, VireidError

EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES = """exit status:
  0    done
  2    bad input or setting, or an output folder another run is writing: one line on stderr
       says which and what to do
  3    the run could not train (e.g. clustering found no clusters: change cluster.eps /
       cluster.min_samples); nothing is marked finished and the same --output can be reused
  130  interrupted (Ctrl-C)
  1    unexpected error (a bug): one line names the crash log holding the traceback"""

# What an interrupted command tells the user (the default: nothing was written).
INTERRUPTED = {
    "train": "interrupted; rerun the same command with --resume to continue from the last finished epoch",
    "demo": "interrupted; rerun the same command with --resume to continue from the last finished epoch",
    "synth": "interrupted; the dataset was not written (the next synth starts afresh)",
}

TRAIN_EXAMPLES = """examples:
  vireid train --dataset sysu --data-root /data/SYSU-MM01 --output runs/sysu
  vireid train --dataset regdb --data-root /data/RegDB --output runs/regdb-3 data.trial=3   # RegDB split 1..10
  vireid train --dataset llcm --data-root /data/LLCM --output runs/llcm
  vireid train --dataset sysu --data-root /data/SYSU-MM01 --output runs/sysu --resume      # after Ctrl-C
  vireid train ... model.weights_path=/models/resnet50-0676ba61.pth   # local ImageNet weights, no download
  vireid train ... --profile paper cmc.phase1_epochs=10                # the paper's text; any KEY=VALUE
  vireid synth --out data/synth --ids 16 --height 64 --width 32 --seed 3   # tiny synthetic data, then:
  vireid train --preset smoke --data-root data/synth --output runs/smoke   # the pipeline in minutes on a CPU
  torchrun --nproc_per_node 4 -m vireid train --dataset sysu --data-root /data/SYSU-MM01 --output runs/sysu
                                                                       # 4 GPUs, each a share of every batch

The dataset presets load ImageNet weights (downloaded once, or model.weights_path) and want a GPU.
Where to get SYSU-MM01, RegDB and LLCM and what to expect: docs/reproduce.md; every setting with its
default: docs/method.md."""

CACHE_NOTE = ("Decoded images are cached in data.cache_dir, else $VIREID_CACHE_DIR, else ~/.cache/vireid "
              "(or $XDG_CACHE_HOME/vireid).")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the layout of descriptions and epilogs, and appends "(default: X)" to each option's help
    unless the default is None/False (then the help text says what happens) or already mentioned."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default is argparse.SUPPRESS
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USER)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {value}")
    return value


def _add_training_flags(p: argparse.ArgumentParser, default_preset: str) -> None:
    """Flags shared by every command that trains (train, demo); `default_preset` says in words which
    preset applies when --preset is not given."""
    from vireid.config import list_presets, load_config

    presets = list_presets()
    outputs = [load_config(name, []).output for name in presets]
    own = ", ".join(sorted({o for o in outputs if o != "runs/vireid"}))
    p.add_argument("--preset", default=None, help=f"packaged preset: {', '.join(presets)} (default: {default_preset})")
    p.add_argument("--config", default=None, metavar="FILE", help="a YAML file applied after the preset")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="run folder: config.yaml, log.txt, metrics.jsonl, checkpoints/, plots/, final_metrics.json "
                        f"(default: the preset's `output`: {own}; runs/vireid for the others and without a preset)")
    p.add_argument("--seed", type=int, default=None, help="one seed for every random choice (default: 0)")
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels; resume reproduces a run")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="default: auto (CUDA when present)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --output from its last readable checkpoint")
    p.add_argument("--profile", choices=("paper", "reference"), default=None,
                   help="paper (the paper's text) or reference (the released code's choices, docs/method.md §6); "
                        "default: the preset's, i.e. reference with the sysu, regdb and llcm presets, paper with "
                        "demo, smoke and bench and without a preset")
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
    cfg = load_config(args.preset or default_preset, overrides, file=args.config)
    args.run_dir = cfg.output  # where a crash log goes, once the run folder exists
    return cfg


def _print_run_result(result: Any) -> None:
    from vireid.evaluation.report import format_table

    if result.final:
        print(format_table(result.final))
    print(f"wrote {result.run_dir / 'final_metrics.json'} (run folder {result.run_dir})")


def cmd_train(args: argparse.Namespace) -> int:
    import vireid.demo  # noqa: F401 - registers the `synthetic` start weights of the demo preset
    from vireid.engine.distributed import launch_rank
    from vireid.engine.pipeline import train

    cfg = _training_config(args, default_preset=args.dataset)
    result = train(cfg, resume=args.resume)
    if launch_rank() == 0:  # under torchrun the table and the file once, from rank 0
        _print_run_result(result)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from vireid.demo.command import run_demo

    if args.data is not None and Path(args.data).exists() and not Path(args.data).is_dir():
        raise VireidError(f"--data {args.data} is a file; give the folder for the synthetic dataset")
    cfg = _training_config(args, default_preset="demo")
    run_demo(cfg, data_dir=args.data, resume=args.resume)
    return EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    from vireid.data.synthetic import generate_synthetic
    from vireid.fileio import check_writable_file, check_writable_folder

    check_writable_folder(args.out, "synth --out")
    if args.contact_sheet:
        check_writable_file(args.contact_sheet, "synth --contact-sheet")
    out = generate_synthetic(args.out, layout=args.layout, ids=args.ids,
                             images_per_camera=args.images_per_camera, height=args.height,
                             width=args.width, seed=args.seed, workers=args.workers,
                             test_fraction=args.test_fraction, overwrite=args.force, infrared=args.infrared)
    print(f"wrote a synthetic {args.layout} dataset to {out}")
    if args.contact_sheet:
        from vireid.data.synthetic import contact_sheet

        print(f"wrote contact sheet {contact_sheet(out, args.contact_sheet)}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from vireid.data.registry import open_dataset

    print(open_dataset(args.dataset, args.data_root, trial=args.trial).describe())
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vireid.evaluation.report import format_table
    from vireid.fileio import check_writable_file, check_writable_folder, write_json

    if bool(args.features) == bool(args.checkpoint):
        raise VireidError("give exactly one of --features FILE.npz or --checkpoint CKPT")
    if args.json:
        check_writable_file(args.json, "evaluate --json")
    if args.plots:
        check_writable_folder(args.plots, "evaluate --plots")
    if args.features:
        from vireid.evaluation.feature_file import evaluate_feature_file

        results = {args.protocol: evaluate_feature_file(args.features, reader_class(args.protocol).metric_protocol)}
    else:
        if not (args.dataset and args.data_root):
            raise VireidError(f"--checkpoint needs --dataset {'|'.join(dataset_names())} and --data-root DIR")
        from vireid.engine.evaluate import evaluate_checkpoint
        from vireid.engine.extract import ExtractOptions

        results = evaluate_checkpoint(args.checkpoint, args.dataset, args.data_root, trial=args.trial,
                                      trials=args.trials,
                                      options=ExtractOptions(batch_size=args.batch_size, device=args.device))
        used = len(next(iter(results.values()))["trials"]) if results else 0
        reader = reader_class(args.dataset)
        if not getattr(reader, "random_gallery", True):
            origin = (f"{getattr(reader, 'title', args.dataset)} has one fixed gallery per split, its test images "
                      "of the other modality; --trials does not apply")
        else:
            origin = "--trials" if args.trials is not None else "the run's eval.trials; --trials changes it"
        print(f"gallery draws per protocol: {used} ({origin})")
    print(format_table(results))
    if args.plots:
        from vireid.viz import plot_cmc

        path = plot_cmc({name: res["cmc"] for name, res in results.items()}, Path(args.plots) / "cmc.png")
        print(f"wrote {path}")
    if args.json:
        print(f"wrote {write_json(args.json, results)}")
    return EXIT_OK


def cmd_extract(args: argparse.Namespace) -> int:
    from vireid.feature_export import extract_feature_file

    report = extract_feature_file(args.checkpoint, args.dataset, args.data_root, args.out, split=args.split,
                                  protocol=args.protocol, trial=args.trial, device=args.device,
                                  batch_size=args.batch_size)
    shapes = ", ".join(f"{k} {v}" for k, v in report["arrays"].items() if k.startswith(("query_f", "gallery_f",
                                                                                         "features_")))
    print(f"wrote {report['path']} ({args.split} split: {shapes})")
    return EXIT_OK


def cmd_match(args: argparse.Namespace) -> int:
    from vireid.engine.rematch import recompute_matching

    if bool(args.run) == bool(args.features):
        raise VireidError("give exactly one of --run RUN_DIR or --features FILE.npz")
    print(recompute_matching(run_dir=args.run, features=args.features, n_memories=args.n_memories,
                             assignment=args.assignment, device=args.device))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from vireid.export import export_onnx

    out = _export_path(args)
    report = export_onnx(args.checkpoint, out, modality=args.modality)
    print(f"wrote {out} ({report['modality']}, {report['height']}x{report['width']}, opset {report['opset']}); "
          f"max |onnxruntime - torch| = {report['max_abs_diff']:.2e}")
    return EXIT_OK


def _export_path(args: argparse.Namespace) -> str:
    return args.out or str(Path(args.checkpoint).with_suffix(f".{args.modality}.onnx"))


def cmd_search(args: argparse.Namespace) -> int:
    from vireid.gallery_search import search_gallery

    search_gallery(args.checkpoint, args.query, args.query_modality, args.gallery, args.gallery_modality,
                   topk=args.topk, out=args.out, device=args.device)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from vireid.fileio import check_writable_file
    from vireid.viz.report import write_report

    check_writable_file(args.out, "report --out")
    print(f"wrote {write_report(args.runs, args.out)}")
    return EXIT_OK


def _sub(sub: Any, name: str, help_text: str, description: str, outputs: str,
         examples: str = "") -> argparse.ArgumentParser:
    """A sub-command parser whose help shows its description, where its outputs go, examples (kept
    as written) and the exit codes."""
    epilog = textwrap.fill("outputs: " + outputs, 92) + (f"\n\n{examples.strip()}" if examples else "")
    return sub.add_parser(name, help=help_text, description=textwrap.fill(description, 92),
                          formatter_class=HelpFormatter, epilog=f"{epilog}\n\n{EXIT_CODES}")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="vireid", formatter_class=HelpFormatter,
        description=textwrap.fill("Unsupervised visible-infrared person re-identification with MMM (Multi-Memory "
                                  "Matching, ECCV 2024): cluster, match across modalities, align, evaluate. "
                                  "Results go to stdout, progress and logs to stderr.", 92),
        epilog=f"Run `vireid COMMAND --help` for the flags of one command.\n\n{EXIT_CODES}")
    parser.add_argument("--version", action="version", version=f"vireid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    devices = ("auto", "cpu", "cuda")
    device_help = "auto = CUDA when present, else CPU"

    p = _sub(sub, "demo", "synthetic data + the whole MMM pipeline on CPU, in minutes",
             "Generate a synthetic visible-infrared dataset (once), build start weights (once), train "
             "CMC -> MMLM -> SCA and print the SYSU-protocol table with the chance level (docs/demo.md).",
             "the run folder (--output, default runs/demo) with demo_summary.json and plots/; tables on stdout. "
             + CACHE_NOTE)
    p.add_argument("--data", default=None, metavar="DIR",
                   help="where the synthetic dataset lives (generated if absent; default: "
                        "<cache>/demo-data)")
    _add_training_flags(p, "demo")
    p.set_defaults(func=cmd_demo)

    p = _sub(sub, "synth", "write a synthetic visible-infrared dataset in the SYSU-MM01 or RegDB layout",
             "Draw synthetic people seen by colour and near-infrared cameras and write them in the raw "
             "SYSU-MM01 or RegDB layout, with id files (docs/synthetic.md). The same parameters give "
             "byte-identical files; an existing dataset with the same parameters is kept as is.",
             "the dataset folder --out (written beside it and renamed into place when complete).")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    p.add_argument("--layout", choices=("sysu", "regdb"), default="sysu", help="folder layout and id files")
    p.add_argument("--ids", type=positive_int, default=60, help="number of identities")
    p.add_argument("--infrared", choices=("near", "thermal"), default="near",
                   help="what the sysu layout's infrared cameras see: near-infrared reflectance, loosely tied "
                        "to the colours (SYSU-MM01), or heat drawn independently of them (as RegDB's thermal "
                        "camera; the regdb layout is always thermal)"),
    p.add_argument("--images-per-camera", type=positive_int, default=None,
                   help="images per person and camera (default: 6 for sysu, 10 per modality for regdb)")
    p.add_argument("--test-fraction", type=fraction, default=0.5, help="share of identities held out for testing")
    p.add_argument("--contact-sheet", default=None, metavar="PNG", help="also draw a few identities into PNG")
    p.add_argument("--height", type=positive_int, default=128, help="image height in pixels")
    p.add_argument("--width", type=positive_int, default=64, help="image width in pixels")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--workers", type=positive_int, default=1, help="processes drawing images")
    p.add_argument("--force", action="store_true",
                   help="replace a synthetic dataset in --out made with other parameters")
    p.set_defaults(func=cmd_synth)

    p = _sub(sub, "train", "train CMC -> MMLM -> SCA on a dataset and evaluate",
             "Train the MMM pipeline on a dataset in its raw layout: cluster-contrast (CMC), multi-memory "
             "matching (MMLM), soft cluster-level alignment (SCA), then evaluate with the dataset's "
             "protocols. Data (every image decoded once), start weights, settings and folders are checked "
             "before the run folder is created; the folder is locked against other writers while the run "
             "lasts; a folder whose run never saved a checkpoint is reused.",
             "the run folder (--output): config.yaml, log.txt, metrics.jsonl, tb/, checkpoints/ (last.pt, "
             "prev.pt, cmc.pt, final.pt), pseudo_labels/, mmlm/, plots/, final_metrics.json; the final table "
             "on stdout, progress and logs on stderr. " + CACHE_NOTE,
             examples=TRAIN_EXAMPLES)
    p.add_argument("--dataset", choices=dataset_names(), default=None,
                   help="the dataset's reader (data.dataset); without --preset it also picks the preset of that "
                        "name, so --dataset sysu, regdb or llcm trains with the released code's recipe (profile "
                        "reference). Without --dataset: the preset's dataset, else sysu")
    p.add_argument("--data-root", default=None, metavar="DIR", help="the dataset's root folder (data.root)")
    _add_training_flags(p, "the preset named by --dataset; none without --dataset, i.e. the built-in "
                           "defaults: SYSU-MM01 with the paper's settings (profile paper)")
    p.set_defaults(func=cmd_train)

    p = _sub(sub, "evaluate", "evaluate saved features or a checkpoint with the standard protocols",
             "Score a checkpoint on a dataset's test protocols, or a feature file written by `vireid extract` "
             "or any other tool (docs/features.md). Metrics are fractions printed as percentages.",
             "the table on stdout; --json FILE and --plots DIR/cmc.png only when given. " + CACHE_NOTE)
    p.add_argument("--features", default=None, metavar="FILE.npz",
                   help="arrays query_/gallery_ features, pids, camids (cosine distance; docs/features.md)")
    p.add_argument("--protocol", choices=dataset_names(), default="sysu",
                   help="the dataset whose ranking rules apply to --features")
    p.add_argument("--checkpoint", default=None, metavar="CKPT", help="a checkpoint written by vireid train")
    p.add_argument("--dataset", choices=dataset_names(), default=None, help="the dataset of --checkpoint")
    p.add_argument("--data-root", default=None, metavar="DIR")
    p.add_argument("--trial", type=positive_int, default=None, help="RegDB split (default: the checkpoint's)")
    p.add_argument("--trials", type=positive_int, default=None,
                   help="gallery draws for SYSU-MM01 / LLCM (default: the run's eval.trials)")
    p.add_argument("--device", choices=devices, default="auto", help=device_help)
    p.add_argument("--batch-size", type=positive_int, default=128, help="images per forward pass")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--plots", default=None, metavar="DIR", help="also draw the CMC curves into DIR/cmc.png")
    p.set_defaults(func=cmd_evaluate, outputs=lambda a: [(a.json, "--json"), (a.plots, "--plots")])

    p = _sub(sub, "extract", "write a checkpoint's features as an .npz for `evaluate --features` or `match`",
             "Embed a dataset's images with a checkpoint and save them (docs/features.md). --split test "
             "writes one protocol's query and first gallery draw in the format of `vireid evaluate "
             "--features`; --split train writes the clustering features of the training images with "
             "their DBSCAN pseudo-labels (the checkpoint's cluster settings) in the format of "
             "`vireid match --features`.",
             "the .npz file --out (written whole or not at all); one line on stdout. " + CACHE_NOTE)
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint written by vireid train")
    p.add_argument("--dataset", choices=dataset_names(), required=True)
    p.add_argument("--data-root", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="FILE.npz")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="test: for `evaluate --features`; train: for `match --features`")
    p.add_argument("--protocol", default=None,
                   help="test split: the protocol whose query and gallery are written (default: the dataset's "
                        "first, e.g. all-single)")
    p.add_argument("--trial", type=positive_int, default=None, help="RegDB split (default: the checkpoint's)")
    p.add_argument("--device", choices=devices, default="auto", help=device_help)
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per forward pass (default: the checkpoint's data.eval_batch_size)")
    p.set_defaults(func=cmd_extract, outputs=lambda a: [(a.out, "--out")])

    p = _sub(sub, "info", "print a dataset's statistics",
             "Read a dataset root and print its identities and images per split, modality and camera.",
             "the statistics on stdout; nothing is written.")
    p.add_argument("--dataset", choices=dataset_names(), required=True)
    p.add_argument("--data-root", required=True, metavar="DIR")
    p.add_argument("--trial", type=positive_int, default=1, help="RegDB split")
    p.set_defaults(func=cmd_info)

    p = _sub(sub, "match", "recompute and report MMLM's visible-infrared cluster matching",
             "Re-run multi-memory matching (docs/mmlm.md) on a run's saved clustering (mmlm/matching.npz) "
             "or on a feature file from `vireid extract --split train`, with other matching settings.",
             "the report on stdout, its last line the summary as JSON; nothing is written.")
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="a run folder with mmlm/matching.npz")
    p.add_argument("--features", default=None, metavar="FILE.npz",
                   help="arrays features_visible, labels_visible, features_infrared, labels_infrared "
                        "(optional pids_visible, pids_infrared)")
    p.add_argument("--n-memories", type=positive_int, default=None,
                   help="memories per cluster (default: the run's mmlm.n_memories, else 4)")
    p.add_argument("--assignment", choices=("hungarian", "nearest"), default=None,
                   help="default: the run's mmlm.assignment, else hungarian")
    p.add_argument("--device", choices=devices, default="auto", help=device_help)
    p.set_defaults(func=cmd_match)

    p = _sub(sub, "report", "one self-contained HTML page explaining and comparing finished runs",
             "Read finished run folders and write one HTML page with their curves, tables and config "
             "differences (docs/report.md).",
             "the page --out; its path on stdout.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="finished run folders; the others' config differences are listed against the first")
    p.add_argument("--out", default="report.html", metavar="FILE.html", help="the page to write")
    p.set_defaults(func=cmd_report, outputs=lambda a: [(a.out, "--out")])

    p = _sub(sub, "export", "export a checkpoint's stem and trunk to ONNX (with a parity check)",
             "Export one modality's embedding network to ONNX: input ImageNet-normalised float32 images "
             "(B, 3, H, W), output L2-normalised features (B, D); onnxruntime's output is compared with "
             'PyTorch\'s. Needs the export extra: pip install "vireid[export]".',
             "the .onnx file --out (default: next to the checkpoint, CKPT.<modality>.onnx); one line on stdout.")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint written by vireid train")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
    p.add_argument("--modality", choices=("visible", "infrared"), default="visible",
                   help="the stem to export (one file per modality)")
    p.add_argument("--out", default=None, metavar="FILE.onnx",
                   help="default: next to the checkpoint, e.g. final.visible.onnx")
    p.set_defaults(func=cmd_export, outputs=lambda a: [(_export_path(a), "--out")])

    p = _sub(sub, "search", "rank a gallery for query images and draw the ranked lists",
             "Embed query images (a file or a folder) and a gallery folder with a checkpoint and rank the "
             "gallery by cosine similarity. Gallery features are kept in an index cache, so a second "
             "search re-embeds only new or changed images. Images in folders named by integers are "
             "judged by that person id.",
             "the picture --out (default: search.png in the current folder) and the rankings as JSON next to "
             "it (search.json); the gallery index in $VIREID_CACHE_DIR/search-index (default "
             "~/.cache/vireid/search-index).")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint written by vireid train")
    p.add_argument("--query", required=True, metavar="IMG_OR_DIR")
    p.add_argument("--query-modality", choices=("visible", "infrared"), default="infrared",
                   help="the stem that embeds the queries")
    p.add_argument("--gallery", required=True, metavar="DIR")
    p.add_argument("--gallery-modality", choices=("visible", "infrared"), default="visible",
                   help="the stem that embeds the gallery")
    p.add_argument("--topk", type=positive_int, default=10, help="gallery images per query")
    p.add_argument("--out", default="search.png", metavar="FILE.png", help="picture; scores go next to it as JSON")
    p.add_argument("--device", choices=devices, default="auto", help=device_help)
    p.set_defaults(func=cmd_search, outputs=lambda a: [(a.out, "--out")])
    return parser


def _crash_log(command: str, run_dir: str | None) -> Path | None:
    """Write the current exception's traceback to a crash log: in the run folder when it exists, else
    in the temporary folder. Returns its path (None when nowhere is writable)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"vireid {__version__} {command} crashed at {stamp}\ncommand line: {' '.join(sys.argv)}\n\n"
            + traceback.format_exc())
    places = [Path(run_dir)] if run_dir and Path(run_dir).is_dir() else []
    places.append(Path(tempfile.gettempdir()))
    for folder in places:
        path = folder / f"vireid-crash-{stamp}-{os.getpid()}.log"
        try:
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def _run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a sub-command; one whose outputs lie inside a run folder holds that folder's lock meanwhile
    (a live run's folder is written by that run alone; `train` and `demo` lock their own)."""
    outputs = getattr(args, "outputs", None)
    if outputs is None:
        return func(args)
    from vireid.engine.runlock import hold_run_folders_of

    with hold_run_folders_of(outputs(args), command=f"vireid {args.command}"):
        return func(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # KEY=VALUE overrides may come anywhere, also after flags (`... cmc.lr=1e-4 --resume sca.epochs=20`),
    # which plain argparse refuses once the positional list has been consumed.
    args, extra = parser.parse_known_args(argv)
    if extra:
        stray = [a for a in extra if a.startswith("-") or "=" not in a]
        if stray or not hasattr(args, "overrides"):
            prog = f"vireid {args.command}" if getattr(args, "command", None) else "vireid"
            print(f"{prog}: error: unrecognized arguments: {' '.join(stray or extra)} (see `{prog} --help`)",
                  file=sys.stderr)
            raise SystemExit(EXIT_USER)  # as argparse does for every other usage mistake
        args.overrides = list(args.overrides) + extra
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_OK
    name = f"vireid {args.command}"
    rank = os.environ.get("RANK", "0") if os.environ.get("WORLD_SIZE", "1") != "1" else "0"
    if rank != "0":
        name += f" (rank {rank})"  # under torchrun: which process speaks
    try:
        return _run_command(func, args)
    except RunStoppedError as err:
        if not getattr(err, "told_by_rank0", False):
            print(f"{name}: stopped: {err}", file=sys.stderr)
        return EXIT_STOPPED
    except VireidError as err:
        if not getattr(err, "told_by_rank0", False):  # under torchrun, a problem every rank met
            print(f"{name}: error: {err}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print(f"{name}: {INTERRUPTED.get(args.command, 'interrupted')}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - a bug: keep the traceback, but in a file
        log = _crash_log(name, getattr(args, "run_dir", None))
        where = f"the traceback is in {log}" if log is not None else "no crash log could be written"
        print(f"{name}: internal error ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
              f"{where}; please report it", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    raise SystemExit(main())
