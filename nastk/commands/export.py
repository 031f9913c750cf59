"""``nastk export --run-dir D``: the run's winner as a runnable model (see :mod:`nastk.export`)."""
from __future__ import annotations

from nastk.commands import print_json


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="the winner of a search run as a TorchScript model or a state dict")
    parser.add_argument("--run-dir", required=True, help="the search run folder")
    parser.add_argument("--out", help="file to write (default <run-dir>/model.pt)")
    parser.add_argument("--format", dest="model_format", choices=["torchscript", "state-dict"], default="torchscript",
                        help="torchscript: loadable with torch.jit.load without nastk (default); "
                             "state-dict: the architecture string, build options and weights")
    parser.add_argument("--output", dest="format", choices=["text", "json"], default="text",
                        help="what this command prints (default text)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from nastk.export import export
    from nastk.runs import read_run

    view = read_run(args.run_dir)
    out = args.out or str(Path(args.run_dir) / "model.pt")
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
