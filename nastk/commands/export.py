"""``nastk export --run-dir D``: a run's result as a runnable model (see :mod:`nastk.export`).

``--run-dir`` names any run folder: a search (its winner; ``--top K`` its K best architectures), a
supernet or staged supernet run (its selected child, ``--arch ARCH`` any child, with the supernet's
inherited weights, no retraining), a few-shot tree (its selected architecture with its leaf's weights;
``--top K`` the best candidate of K leaves) or a DARTS-PT selection folder (its architecture with the
tuned supernet's weights).
"""
from __future__ import annotations

import argparse

from nastk.commands import print_json
from nastk.options import Int

MODEL_FORMATS = ("torchscript", "state-dict")


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="a run's result (a search's winner or top K, a supernet's "
                                   "selected or named child, a few-shot or DARTS-PT selection) as a TorchScript "
                                   "model or a state dict")
    parser.add_argument("--run-dir", required=True, help="the run folder: a search, a supernet (nastk supernet "
                        "train), a few-shot tree or a DARTS-PT selection folder")
    parser.add_argument("--arch", help="supernet runs: the child to export (an architecture string of the supernet's "
                        "space), with the supernet's inherited weights (default: the run's selected architecture)")
    parser.add_argument("--top", type=Int(minimum=1), metavar="K", help="export the K best distinct architectures of a search "
                        "(or the best candidates of K leaves of a few-shot tree) into the folder --out, one file each")
    parser.add_argument("--out", help="file to write (default <run-dir>/model.pt; with --arch "
                        "<run-dir>/child-<hash of ARCH>.pt); with --top a folder (default <run-dir>/top)")
    parser.add_argument("--out-format", dest="model_format", choices=MODEL_FORMATS, default=None,
                        help="torchscript: loadable with torch.jit.load without nastk (default); "
                             "state-dict: the architecture string, build options and weights")
    parser.add_argument("--bn-calibration", type=Int(minimum=0), help="supernet children: recalibrate tracked "
                        "BatchNorm statistics on this many batches of the supernet run's training images (0: none; "
                        "default: a search's supernet evaluator's setting, else the evaluator's rule: enough batches "
                        "for 2000 images when a classifier supernet's BatchNorm tracks running statistics, none for "
                        "image pairs)")
    parser.add_argument("--bn-recipe", choices=["cumulative", "exact"], help="supernet children: cumulative (BigNAS) "
                        "or exact (OFA) recalibration (default: a search's supernet evaluator's setting, else cumulative)")
    parser.add_argument("--format", dest="format", choices=("text", "json") + MODEL_FORMATS, default=None,
                        metavar="{text,json}",
                        help="what this command prints: text or json (default text); torchscript and state-dict "
                             "are the deprecated spelling of --out-format")
    parser.add_argument("--output", dest="output", choices=["text", "json"], default=None,
                        help=argparse.SUPPRESS)  # the deprecated spelling of --format text|json
    parser.set_defaults(func=run)


def _resolve_formats(args) -> list:
    """--format text|json and --out-format; the old spellings (--format torchscript|state-dict, --output)
    are accepted for one release: returns one deprecation line for each, which the command prints once
    it has succeeded (a refused command stays one error line)."""
    from nastk.errors import ConfigError

    deprecated = []
    if args.format in MODEL_FORMATS:
        if args.model_format is not None and args.model_format != args.format:
            raise ConfigError(f"--format {args.format} and --out-format {args.model_format} disagree; "
                              f"give --out-format only")
        deprecated.append(f"nastk: warning: 'export --format {args.format}' is deprecated and will be removed in the next "
                       f"release; use --out-format {args.format} (--format now means text or json, as everywhere)")
        args.model_format, args.format = args.format, None
    if args.output is not None:
        if args.format is not None and args.format != args.output:
            raise ConfigError(f"--output {args.output} and --format {args.format} disagree; give --format only")
        deprecated.append(f"nastk: warning: 'export --output {args.output}' is deprecated and will be removed in the "
                       f"next release; use --format {args.output}")
        args.format = args.output
    args.format = args.format or "text"
    args.model_format = args.model_format or "torchscript"
    return deprecated


def run(args) -> int:
    import hashlib
    from pathlib import Path

    from nastk.errors import ConfigError
    from nastk.export import export, export_child, export_oneshot, export_top
    from nastk.log import LOGGER
    from nastk.run_views import CHECKPOINT, ONESHOT_KINDS, read_any, run_kind

    deprecated = _resolve_formats(args)
    folder = Path(args.run_dir)
    if args.arch is not None and args.top is not None:
        raise ConfigError("give either --arch (one child) or --top K, not both")
    kind = run_kind(folder) if folder.is_dir() else None
    bn_recipe = args.bn_recipe or "cumulative"
    if args.arch is not None:
        if not (folder / CHECKPOINT).is_file():
            what = "does not exist" if not folder.is_dir() else f"holds no supernet checkpoint ({CHECKPOINT})"
            raise ConfigError(f"--arch exports a child of a supernet run, and {folder} {what}; "
                              f"train one with 'nastk supernet train'")
        digest = hashlib.sha1(args.arch.strip().encode()).hexdigest()[:10]
        out = args.out or str(folder / f"child-{digest}.pt")
        written = [export_child(folder, args.arch.strip(), out, args.model_format, args.bn_calibration, bn_recipe)]
    elif kind in ONESHOT_KINDS or (kind is None and (folder / CHECKPOINT).is_file()):
        if kind is None:  # a checkpoint without a readable config: name the child
            raise ConfigError(f"{folder} is a supernet run folder: name the child to export with --arch ARCH")
        view = read_any(folder)
        out = args.out or str(folder / ("top" if args.top else "model.pt"))
        written = export_oneshot(view, out, args.model_format, args.top, args.bn_calibration, bn_recipe)
    else:
        view = read_any(folder)
        if view.config["evaluator"].get("kind") == "supernet":
            if args.bn_calibration is not None:
                view.config["evaluator"]["bn_calibration"] = args.bn_calibration
            if args.bn_recipe is not None:
                view.config["evaluator"]["bn_recipe"] = args.bn_recipe
        elif args.bn_calibration is not None or args.bn_recipe is not None:
            raise ConfigError("--bn-calibration and --bn-recipe apply to supernet children: a supernet run with "
                              "--arch, or a search whose evaluator was supernet:RUN_DIR")
        if args.top is not None:
            written = export_top(view, args.top, args.out or str(folder / "top"), args.model_format)
        else:
            written = [export(view, args.out or str(folder / "model.pt"), args.model_format)]
    _report(written, args)
    for line in deprecated:
        LOGGER.warning(line)
    return 0


def _report(written, args) -> None:
    if args.format == "json":
        print_json(written[0] if args.top is None else written)
        return
    for item in written:
        rank = f"#{item['rank']} " if "rank" in item else ""
        output = "image to image" if item["num_classes"] is None else f"{item['num_classes']} classes"
        print(f"exported {rank}{item['arch']} ({item['space']}, input {'x'.join(map(str, item['input_shape']))}, "
              f"{output}) to {item['file']} as {item['format']}")
        if "selected" in item:
            print(f"selected: {item['selected']}")
        print(f"weights: {item['weights']}")
        if "check_max_abs_difference" in item:
            print(f"check: torch.jit.load reproduces the model's outputs (max abs difference "
                  f"{item['check_max_abs_difference']:.2e})")
