"""``nastk export --run-dir D``: the run's winner as a runnable model (see :mod:`nastk.export`).

``--run-dir`` names a search run (its winner is exported) or, with ``--arch ARCH``, a supernet run of
``nastk supernet train`` (that child is exported with its inherited weights, no retraining).
"""
from __future__ import annotations

from nastk.commands import print_json
from nastk.options import Int


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="the winner of a search run, or a child of a trained supernet, as a "
                                   "TorchScript model or a state dict")
    parser.add_argument("--run-dir", required=True, help="the search run folder, or with --arch a supernet run folder "
                        "(nastk supernet train)")
    parser.add_argument("--arch", help="supernet runs: the child to export (an architecture string of the supernet's "
                        "space), with the supernet's inherited weights")
    parser.add_argument("--out", help="file to write (default <run-dir>/model.pt; with --arch "
                        "<run-dir>/child-<hash of ARCH>.pt)")
    parser.add_argument("--format", dest="model_format", choices=["torchscript", "state-dict"], default="torchscript",
                        help="torchscript: loadable with torch.jit.load without nastk (default); "
                             "state-dict: the architecture string, build options and weights")
    parser.add_argument("--bn-calibration", type=Int(minimum=0), help="supernet children: recalibrate tracked "
                        "BatchNorm statistics on this many batches of the supernet run's training images (0: none; "
                        "default: a search's supernet evaluator's setting, else enough batches for 2000 images when "
                        "the supernet's BatchNorm tracks running statistics)")
    parser.add_argument("--bn-recipe", choices=["cumulative", "exact"], help="supernet children: cumulative (BigNAS) "
                        "or exact (OFA) recalibration (default: a search's supernet evaluator's setting, else cumulative)")
    parser.add_argument("--output", dest="format", choices=["text", "json"], default="text",
                        help="what this command prints (default text)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import hashlib
    from pathlib import Path

    from nastk.errors import ConfigError
    from nastk.export import export, export_child
    from nastk.oneshot.trainer import CHECKPOINT
    from nastk.runs import read_run

    folder = Path(args.run_dir)
    if args.arch is not None:
        if not (folder / CHECKPOINT).is_file():
            what = "does not exist" if not folder.is_dir() else f"holds no supernet checkpoint ({CHECKPOINT})"
            raise ConfigError(f"--arch exports a child of a supernet run, and {folder} {what}; "
                              f"train one with 'nastk supernet train'")
        digest = hashlib.sha1(args.arch.strip().encode()).hexdigest()[:10]
        out = args.out or str(folder / f"child-{digest}.pt")
        written = export_child(folder, args.arch.strip(), out, args.model_format, args.bn_calibration,
                               args.bn_recipe or "cumulative")
    else:
        if (folder / CHECKPOINT).is_file():
            raise ConfigError(f"{folder} is a supernet run folder: name the child to export with --arch ARCH")
        view = read_run(folder)
        if view.config["evaluator"].get("kind") == "supernet":
            if args.bn_calibration is not None:
                view.config["evaluator"]["bn_calibration"] = args.bn_calibration
            if args.bn_recipe is not None:
                view.config["evaluator"]["bn_recipe"] = args.bn_recipe
        elif args.bn_calibration is not None or args.bn_recipe is not None:
            raise ConfigError("--bn-calibration and --bn-recipe apply to supernet children: a supernet run with "
                              "--arch, or a search whose evaluator was supernet:RUN_DIR")
        out = args.out or str(folder / "model.pt")
        written = export(view, out, args.model_format)
    if args.format == "json":
        print_json(written)
        return 0
    print(f"exported {written['arch']} ({written['space']}, input {'x'.join(map(str, written['input_shape']))}, "
          f"{written['num_classes']} classes) to {written['file']} as {written['format']}")
    print(f"weights: {written['weights']}")
    if "check_max_abs_difference" in written:
        print(f"check: torch.jit.load reproduces the model's outputs (max abs difference "
              f"{written['check_max_abs_difference']:.2e})")
    return 0
