"""``nastk gan search``: EAGAN's two-stage search of a GAN generator and discriminator (methods.md 5) into a
run folder (resumable with ``--resume``), the winners trained stand alone with an EMA generator;
``nastk gan plot RUN_DIR``: the stage-1 / stage-2 Pareto plots of a run.

Flags come from :mod:`nastk.generative.config` (one per EAGAN option); torch loads only when one runs.
"""
from __future__ import annotations

from nastk.commands import print_json


def register(subparsers) -> None:
    from nastk.generative.config import FIELD_TYPES, HELP, EaganConfig

    parser = subparsers.add_parser("gan", help="EAGAN: evolutionary search of GAN generators and discriminators")
    commands = parser.add_subparsers(dest="gan_command", metavar="ACTION", required=True, parser_class=type(parser))
    search = commands.add_parser("search", help="two-stage EAGAN search (G, then D) and the winners trained stand alone")
    search.add_argument("--run-dir", required=True, help="the run folder (config.json, stage folders, journals, plots)")
    search.add_argument("--resume", action="store_true", help="continue the run in --run-dir exactly where it stopped")
    search.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, mps)")
    search.add_argument("--format", choices=["text", "json"], default="text")
    defaults = EaganConfig()
    for name, value_type in FIELD_TYPES.items():
        search.add_argument("--" + name.replace("_", "-"), dest=name, type=value_type, default=getattr(defaults, name),
                            help=HELP[name])
    search.set_defaults(func=run_search)
    plot = commands.add_parser("plot", help="Pareto plots (FID vs IS, size as area) of a run's stages")
    plot.add_argument("run_dir", help="an EAGAN run folder")
    plot.set_defaults(func=run_plot)


def run_search(args) -> int:
    from dataclasses import fields

    from nastk.generative.config import EaganConfig

    config = EaganConfig(**{f.name: getattr(args, f.name) for f in fields(EaganConfig)})  # checked before any write
    from nastk.generative.eagan import EaganSearch

    summary = EaganSearch(config, args.run_dir, resume=args.resume, device=args.device, progress=True).search()
    if args.format == "json":
        print_json(summary)
        return 0
    print(f"generator     {summary['generator']}")
    print(f"discriminator {summary['discriminator']}")
    final = summary.get("final") or {}
    if final:
        last, best = final["last"], final["best_of_checkpoints"]
        print(f"last checkpoint ({final['d_steps']} D steps): {final['fid_name']} {last['fid']:.2f}  "
              f"{final['is_name']} {last['is']:.2f}")
        print(f"best of checkpoints (selected on the metric itself, as EAGAN reports): FID {best['fid']:.2f} at "
              f"{best['d_steps']} D steps")
        if final["collapse"]["collapsed"]:
            print(f"mode collapse: {final['collapse']['reason']}")
    print(f"run folder {args.run_dir} ({summary['wall_s']} s)")
    return 0


def run_plot(args) -> int:
    from pathlib import Path

    from nastk.errors import RunError
    from nastk.generative.eagan import plot_fronts

    if not (Path(args.run_dir) / "stage1.json").is_file():
        raise RunError(f"{args.run_dir} is not an EAGAN run folder (no stage1.json)")
    for path in plot_fronts(args.run_dir):
        print(path)
    return 0
