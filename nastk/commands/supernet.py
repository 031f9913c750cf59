"""``nastk supernet train|rank|select``: one-shot supernet training, ranking and architecture selection.

``train`` runs (or with ``--resume`` continues) a supernet run folder with a training step
(``single_path``: SPOS / PA&DA; ``darts``: bilevel DARTS) and works as is under
``torchrun --nproc_per_node K -m nastk.cli supernet train ...``; ``rank`` scores architectures with
the run's inherited weights and compares them with the benchmark (a space without one, such as
mobilenet, is ranked by those scores alone, said so); ``select`` turns a supernet with
architecture parameters into one architecture (``--method argmax``).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from nastk.commands import print_json, read_mapping
from nastk.errors import ConfigError
from nastk.paths import atomic_write
from nastk.options import Float, Int

#: train flags that map one-to-one onto OneShotConfig fields
_CONFIG_FLAGS = ("space", "data", "dataset", "image_size", "sampler", "step", "epochs", "train_size", "batch_size", "accumulate", "lr",
                 "lr_min", "lr_schedule", "lr_power", "momentum", "nesterov", "weight_decay", "grad_clip", "valid_size",
                 "seed", "held_out_fraction", "bn_recalibration", "eval_batch_size")
#: train flags of a few-shot run
_FEWSHOT_FLAGS = ("splits", "split_epochs", "no_restart", "gm_batches", "gm_mode", "gm_rule", "split_decisions",
                  "select_archs")
#: argparse destinations of the plug-in flags: step options and supernet (space) options
STEP_DEST, SUPERNET_DEST, DATA_DEST = "step_option__", "supernet_option__", "data_option__"


def register(subparsers) -> None:
    parser = subparsers.add_parser("supernet", help="train a weight-sharing supernet and rank architectures with it")
    commands = parser.add_subparsers(dest="supernet_command", metavar="{train,rank,select,histogram}", parser_class=type(parser))
    commands.required = True

    train = commands.add_parser("train", help="train a supernet into a run folder (SPOS, PA&DA, DARTS, sandwich, ...)")
    add = train.add_argument
    add("--config", help="YAML or JSON file of supernet training options (the keys of a run's config.json, "
        "with step_options / supernet / sampler_options sections); flags override it")
    add("--space", help="search space with a supernet: nb201, darts, mobilenet, ... or package.module:Class (default nb201)")
    add("--step", help="training step: single_path = one sampled path per batch (SPOS / PA&DA, --sampler); darts = "
        "bilevel DARTS on a 50/50 split of the training images; sandwich = BigNAS' sandwich rule; or an entry point "
        "(group nastk.steps) or package.module:Class. A new run starts from the step's recipe (darts: 50 epochs, "
        "batch 64, lr 0.025 cosine to 0.001, wd 3e-4; sandwich: lr 0.1 Nesterov, wd 5e-5, batch 128) unless flags "
        "say otherwise; the step's own options are the flags under 'options of training steps' (default single_path)")
    add("--lr-min", type=Float(minimum=0), help="final weight learning rate of the schedule (default 0; darts 0.001)")
    add("--lr-schedule", choices=["cosine", "cosine_power"], help="weight learning-rate schedule per epoch: cosine, "
        "or sharpDARTS' cosine power annealing (default cosine)")
    add("--lr-power", type=Float(minimum=1), help="cosine_power: the exponent base p (default 10; 1 = cosine)")
    add("--sampler", help="uniform = SPOS; pada = path and data importance sampling; pa / da = path-only / "
        "data-only ablations; space = SPOS over the space's own random architectures (needed for darts, whose cells "
        "keep two inputs per node); or a path sampler's name (entry point group nastk.samplers, or "
        "package.module:Class) with uniform data (default uniform)")
    add("--data", help="what the examples are: labelled (images and labels), two_views (two augmentations of each "
        "image, for self-supervised steps), image_pairs (low / high resolution, for super-resolution), or a "
        "registered data module (entry point group nastk.data) (default labelled)")
    add("--dataset", help="training images: cifar10 (the shared subset), digits, or an .npz in the same layout (default cifar10)")
    add("--epochs", type=Int(minimum=1), help="training epochs (default 250, PA&DA's)")
    add("--train-size", type=Int(minimum=1), help="use this many training images (a fixed class-mixed subset; default all)")
    add("--image-size", type=Int(minimum=1), help="average-pool the images to this size first (e.g. 16; default as stored)")
    add("--batch-size", type=Int(minimum=1), help="global batch size over all ranks (default 256)")
    add("--accumulate", type=Int(minimum=1), help="micro-batches per rank and step, gradients averaged (default 1); "
        "one process with --accumulate K computes what K DDP ranks compute")
    add("--lr", type=Float(above=0), help="SGD learning rate, cosine-annealed to 0 (default 0.05)")
    add("--momentum", type=Float(minimum=0, below=1), help="SGD momentum (default 0.9)")
    add("--nesterov", action=argparse.BooleanOptionalAction, default=None, help="Nesterov momentum (default off; sandwich on)")
    add("--weight-decay", type=Float(minimum=0), help="weight decay (default 2.5e-4)")
    add("--grad-clip", type=Float(minimum=0), help="clip the weights' gradient norm (default 5; 0 = off)")
    add("--tau-max", type=Float(above=0, maximum=1), help="PA&DA: cap the mixing weight tau_e = e/E (an importance floor; default 1 = as published)")
    add("--valid-size", type=Int(minimum=0), help="test images for the per-epoch supernet accuracy (monitoring only; default 500)")
    add("--eval-batch-size", type=Int(minimum=1), help="images per forward pass when monitoring and per recalibration "
        "batch (default 500)")
    add("--bn-recalibration", type=Int(minimum=0), help="training batches that recalibrate tracked BatchNorm statistics "
        "of each monitored path before the per-epoch accuracy (default 0; needed with --bn-momentum 0)")
    add("--no-augment", action="store_true", help="no random crop / flip")
    add("--seed", type=Int(minimum=0), help="random seed (default 0)")
    add("--device", default="cpu", help="torch device (cpu, cuda; under torchrun cuda means cuda:LOCAL_RANK)")
    add("--stages", choices=["ofa", "blockwise"], help="a stage schedule: ofa = OFA's progressive shrinking (full "
        "network, then kernel, depth and expand phases with the ofa step distilling from the full network); --epochs "
        "is the length of a long phase (OFA: 120), short phases get 25/120 of it; blockwise = BossNAS' search (--step "
        "bossnas --data two_views on a space of blocks: nats-sss, hytra): block by block, --epochs epochs each, then "
        "every path of the block rated on held-out training images (--rating-* options; --held-out-fraction default "
        "0.2) and the best fixed for the next blocks; writes bossnas.json; a config file may list its own 'stages'")
    add("--held-out-fraction", type=Float(minimum=0, below=1), help="share of the training images held out from weight training, the "
        "validation split selection reads (default: the step's, 0.5 for darts, 0 for single_path; few-shot "
        "single_path runs default to 0.5)")
    add("--fewshot", choices=["gm", "exhaustive"], help="few-shot training: gm = GM-NAS' gradient-matching splits "
        "into two groups; exhaustive = one sub-supernet per option of a decision (Few-shot NAS); the architecture "
        "is selected across the sub-supernets at the end (default: one-shot)")
    add("--splits", type=Int(minimum=1), help="few-shot: split levels (gm: 2^K sub-supernets; default gm 2, exhaustive 1)")
    add("--split-epochs", help="few-shot: comma-separated epochs after which each level splits (default: evenly "
        "over the first half of --epochs, e.g. 15,30 of 60); the leaves train the remaining epochs")
    add("--no-restart", action="store_true", help="few-shot: leaves inherit their parent after the last split "
        "instead of restarting from scratch (default: gm restarts, exhaustive inherits)")
    add("--gm-batches", type=Int(minimum=1), help="gm: minibatches the gradient-matching distance averages (R; default 10, "
        "the paper's 100)")
    add("--gm-mode", choices=["hard", "soft"], help="gm: an option's row is one-hot (hard) or keeps its "
        "mixture weight (soft, darts only) (default hard)")
    add("--gm-rule", choices=["cut", "darts"], help="gm: cut = balanced split, edge of largest across-cut distance "
        "(NB201 rule); darts = groups of >= 2, edge of least within-group distance (DARTS-space rule) (default cut)")
    add("--split-decisions", help="few-shot: comma-separated decisions that may be split (default all; exhaustive "
        "splits the first of them at each level)")
    add("--select-archs", type=Int(minimum=1), help="few-shot single_path: random architectures evaluated per sub-supernet "
        "(default 200)")
    add("--run-dir", required=True, help="run folder (config.json, checkpoint.pt, metrics.jsonl, summary.json; "
        "few-shot: tree.json, one folder per node, selection.json)")
    add("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--format", choices=["text", "json"], default="text")
    train.defer(_add_train_plugin_flags)
    train.set_defaults(func=run_train)

    rank = commands.add_parser("rank", help="rank architectures with a trained supernet's weights (against the "
                               "space's benchmark when it has one, e.g. NB201)")
    add = rank.add_argument
    add("--run-dir", required=True, help="a folder written by 'nastk supernet train'")
    add("--sample", type=Int(minimum=1), default=100, help="rank this many distinct random architectures (default 100)")
    add("--seed", type=Int(minimum=0), default=0, help="seed of the architecture sample (default 0)")
    add("--archs", help="file with one architecture string per line (instead of --sample)")
    add("--split", choices=["held_out", "test"], default="test", help="images to score on: test = the test split "
        "(the default: ranking against benchmark truth is a report, nothing is selected by it); held_out = the "
        "run's training images its weights never trained on (its held-out part, else those beyond --train-size), "
        "the split a search selects by (--evaluator supernet:RUN_DIR)")
    add("--eval-size", type=Int(minimum=1), help="images of --split to evaluate on (default all)")
    add("--batch-size", type=Int(minimum=1), default=500, help="evaluation batch (BatchNorm uses batch statistics; default 500)")
    add("--bn-calibration", type=Int(minimum=0),
        help="recalibrate tracked BatchNorm statistics on this many batches of the run's training images per "
             "architecture (0: none; default: enough batches for 2000 images when the supernet's BatchNorm tracks "
             "running statistics, as the supernet evaluator and nastk export do, else 0)")
    add("--bn-recipe", choices=["cumulative", "exact"], default="cumulative", help="how --bn-calibration "
        "re-estimates them: cumulative = reset, momentum None, forward the batches (BigNAS / AttentiveNAS); exact = "
        "batch-size-weighted average of batch means and biased variances (OFA) (default cumulative)")
    add("--truth-dataset",
        help="benchmark dataset of the ground truth (default cifar10: 200-epoch test accuracy); only for spaces "
             "with a benchmark")
    add("--device", default="cpu")
    add("--no-progress", action="store_true")
    add("--format", choices=["text", "json"], default="text")
    rank.set_defaults(func=run_rank)

    select = commands.add_parser("select", help="the architecture a supernet's architecture parameters stand for")
    add = select.add_argument
    add("--run-dir", required=True, help="a folder written by 'nastk supernet train --step darts'")
    add("--method", default="argmax", help="argmax: each decision's strongest option "
        "through the space's rule (DARTS cells: two strongest non-none inputs per node); pt: DARTS-PT, decision by "
        "decision the option whose removal hurts the supernet's held-out accuracy most, tuning the supernet in "
        "between (DARTS cells: then two inputs per node by the same test); or a selector registered, installed (entry "
        "point group nastk.selectors) or given as package.module:function (default argmax)")
    add("--crit", choices=["acc", "loss"], help="pt: the held-out accuracy drop or loss rise decides (default acc)")
    add("--pt-interval", type=Int(minimum=0), help="pt: tuning epochs between decisions (default 5, DARTS-PT's)")
    add("--fix-alpha", action="store_true", help="pt: keep alpha frozen while tuning (DARTS-PT fix-alpha; default: "
        "as the supernet was trained)")
    add("--lr-factor", type=Float(above=0), help="pt: tuning learning rate as a multiple of the search lr (default 0.1)")
    add("--tune-lr-min", type=Float(minimum=0), help="pt: anneal the tuning lr to this by cosine (default constant; DARTS-PT's "
        "DARTS-space recipe: 0.001)")
    add("--edge-order", choices=["random", "fixed"], help="pt: seeded random order of the decisions, or their own "
        "order (default random)")
    add("--out", help="pt: selection folder (default RUN_DIR/pt, or RUN_DIR/pt-fix-alpha with --fix-alpha)")
    add("--resume", action="store_true", help="pt: continue a killed selection in its folder")
    add("--no-progress", action="store_true", help="pt: no progress lines")
    add("--truth-dataset", help="benchmark dataset whose accuracy is reported when the "
        "benchmark has the architecture (default cifar10)")
    add("--device", default="cpu")
    add("--format", choices=["text", "json"], default="text")
    select.set_defaults(func=run_select)

    histogram = commands.add_parser("histogram", help="how uniform sampling fills the complexity bins of an elastic "
                                    "space (the imbalance ShiftNAS corrects)")
    add = histogram.add_argument
    add("--space", default="mobilenet", help="an elastic space with a supernet that knows its costs (default mobilenet)")
    add("--metric", choices=["flops", "params"], default="flops")
    add("--bins", type=Int(minimum=1, maximum=1000), default=8, help="equal-width bins over the cost range (default 8)")
    add("--bin-step", type=Float(above=0), help="fixed bin width in the cost's units (MFLOPs / M params) instead of --bins")
    add("--samples", type=Int(minimum=1, maximum=10_000_000), default=10000, help="uniform children (default 10000)")
    add("--seed", type=Int(minimum=0), default=0)
    add("--plot", help="write a bar chart (PNG, PDF or SVG) here")
    add("--format", choices=["text", "json"], default="text")
    histogram.set_defaults(func=run_histogram)


def _add_train_plugin_flags(parser, argv) -> None:
    """A flag per option any training step declares (``OPTIONS``), per supernet option any space declares
    (``SUPERNET_OPTIONS``) and per data-module option, also for a step or space named as
    package.module:Class on this command line."""
    from nastk.commands.search import _add_flag, _flag_values, _uses

    named = {kind: list(_flag_values(argv, f"--{kind}")) for kind in ("step", "space", "data")}
    steps, spaces = _step_declarations(named["step"]), _space_declarations(named["space"])
    for title, owners, dest, kind in (("options of training steps (--step)", steps, STEP_DEST, "step"),
                                      ("supernet options of spaces (--space)", spaces, SUPERNET_DEST, "space"),
                                      ("options of data modules (--data)", _data_declarations(), DATA_DEST, "data")):
        group = parser.add_argument_group(title)
        for name, declarations in owners.items():
            # the flag parses as its owner on this command line declares it (steps may give one name two types)
            chosen = [option for label, option in declarations if named[kind] and label == f"{kind} {named[kind][-1]}"]
            option = (chosen or [declarations[0][1]])[0]
            if option.flag in parser._option_string_actions:
                continue  # a general flag of the same name wins; the option stays reachable by --config
            _add_flag(group, option, _uses(declarations))
            action = group._group_actions[-1]
            action.dest = dest + name
            if action.nargs != 0:  # not a --flag/--no-flag pair
                action.metavar = name.upper()


def _owners(kind: str, names, load, options_of, label_of=lambda name, plugin: name):
    """``{option name: [("KIND LABEL", Option), ...]}`` over the plug-ins ``names`` (each listed once); a name
    that does not load is left out here and reported by ``run_train`` as one line."""
    from nastk.errors import NastkError

    owners = {}
    for name in names:
        try:
            plugin = load(name)
            options = options_of(plugin)
        except NastkError:
            continue
        label = f"{kind} {label_of(name, plugin)}"
        for option in options:
            if all(owner != label for owner, _ in owners.get(option.name, [])):  # a plug-in loaded twice, listed once
                owners.setdefault(option.name, []).append((label, option))
    return owners


def _step_declarations(named=()):
    from nastk.oneshot.steps import STEPS
    from nastk.options import declared

    return _owners("step", list(STEPS.names()) + [n for n in named if ":" in n], STEPS.get, declared)


def _data_declarations():
    from nastk.oneshot.datamodules import DATA_MODULES
    from nastk.options import declared

    return _owners("data", DATA_MODULES.names(), DATA_MODULES.get, declared)


def _space_declarations(named=()):
    from nastk.space import SPACES, get_space

    return _owners("space", list(SPACES.names()) + [n for n in named if ":" in n], get_space,
                   lambda space: space.supernet_options(), lambda name, space: space.name)


def train_config(args):
    """The run's config: the saved one (when resuming) or the step's recipe, then --config, then the flags given."""
    from nastk.oneshot.trainer import CHECKPOINT, OneShotConfig, step_recipe

    config_path = Path(args.run_dir) / "config.json"
    file_options = _read_config_file(Path(args.config)) if args.config else {}
    source = f"config file {args.config}" if args.config else "the flags"
    if args.resume and config_path.is_file():
        options = _read_run_config(config_path)
        if "fewshot" in options:  # a few-shot run keeps its training config beside the split schedule
            options = options["train"]
        try:  # the saved values on their own first: a damaged one is named as the run config's
            OneShotConfig.from_dict(OneShotConfig.upgraded(options), f"run config {config_path}")
        except ConfigError as error:
            raise ConfigError(f"cannot resume {args.run_dir}: run config {config_path}: {error}") from None
    elif (Path(args.run_dir) / CHECKPOINT).is_file() or config_path.is_file():
        raise ConfigError(f"{args.run_dir} already holds a supernet run; pass --resume or choose another --run-dir")
    else:
        step = args.step or file_options.get("step") or "single_path"
        options = {**OneShotConfig().to_dict(), **step_recipe(step)}
    options.update(file_options)
    if getattr(args, "stages", None) == "ofa":
        from nastk.oneshot.stages import progressive_shrinking
        from nastk.space import get_space

        space = get_space(args.space or options.get("space", "nb201"))
        options["stages"] = progressive_shrinking(space, int(args.epochs or options["epochs"]))
    for flag in _CONFIG_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            options[flag] = value
    supernet_options = {k[len(SUPERNET_DEST):]: v for k, v in vars(args).items() if k.startswith(SUPERNET_DEST) and v is not None}
    if supernet_options:
        options["supernet"] = {**(options.get("supernet") or {}), **supernet_options}
    if not args.resume:  # a new run writes down the sizes its flags default to (a resumed one keeps its own)
        from nastk.space import get_space

        defaults = get_space(options.get("space") or "nb201").supernet_run_defaults()
        if defaults:
            options["supernet"] = {**defaults, **(options.get("supernet") or {})}
    if args.tau_max is not None:
        options["sampler_options"] = {**(options.get("sampler_options") or {}), "tau_max": args.tau_max}
    if args.no_augment:
        options["augment"] = False
    step_options = {k[len(STEP_DEST):]: v for k, v in vars(args).items() if k.startswith(STEP_DEST) and v is not None}
    step = options.get("step", "single_path")
    if step_options:
        owners = _step_declarations([step])
        takes = {o.name for label, o in sum(owners.values(), []) if label == f"step {step}"}
        foreign = sorted(set(step_options) - takes)
        if foreign:
            flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
            whose = sorted({label for name in foreign for label, _ in owners.get(name, [])})
            raise ConfigError(f"{flags} {'is an option' if len(foreign) == 1 else 'are options'} of {', '.join(whose)}, "
                              f"not of --step {step}")
    options["step_options"] = {**(options.get("step_options") or {}), **step_options}
    data_options = {k[len(DATA_DEST):]: v for k, v in vars(args).items() if k.startswith(DATA_DEST) and v is not None}
    if data_options:
        options["data_options"] = {**(options.get("data_options") or {}), **data_options}
    config = OneShotConfig.from_dict(options, source)
    if getattr(args, "stages", None) == "blockwise":  # the schedule is made of the run's own step options
        from nastk.oneshot.bossnas import blockwise

        config = blockwise(config)
    return config


def _read_config_file(path: Path):
    """A YAML/JSON mapping of OneShotConfig keys (a run's config.json reads as is)."""
    return {str(key).replace("-", "_"): value for key, value in read_mapping(path).items()}


def _read_run_config(path: Path):
    """A supernet run's config.json (JSON; size, depth and shape checked by :mod:`nastk.readers`)."""
    from nastk.readers import MAX_CONFIG_BYTES, read_json

    saved = read_json(path, "run config", ConfigError, max_bytes=MAX_CONFIG_BYTES)
    if "fewshot" in saved and not (isinstance(saved["fewshot"], dict) and isinstance(saved.get("train"), dict)):
        raise ConfigError(f"run config {path} of a few-shot run needs 'fewshot' and 'train' mappings")
    return saved


def split_schedule(args, config):
    """The few-shot schedule of --fewshot (the saved one when resuming a few-shot run)."""
    from nastk.oneshot.fewshot import SplitSchedule

    config_path = Path(args.run_dir) / "config.json"
    saved = _read_run_config(config_path) if args.resume and config_path.is_file() else {}
    given = [f for f in _FEWSHOT_FLAGS if getattr(args, f) not in (None, False)]
    if "fewshot" in saved:
        try:
            stored = SplitSchedule(**saved["fewshot"])
        except TypeError as error:  # a key SplitSchedule does not have, or one it needs missing
            raise ConfigError(f"run config {config_path}: its split schedule 'fewshot' is damaged ({error})") from None
        if given or args.fewshot:  # the flags given again must describe the stored schedule
            args.fewshot = args.fewshot or stored.method
            asked = asdict(_schedule_of_flags(args, config))
            differ = sorted(k for k, v in asked.items() if v != getattr(stored, k))
            if differ:
                raise ConfigError(f"cannot resume {args.run_dir}: its split schedule differs in {', '.join(differ)}")
        return stored
    if not args.fewshot:
        if given:
            raise ConfigError(f"{_flags(given)} only with --fewshot")
        return None
    return _schedule_of_flags(args, config)


def _flags(names) -> str:
    names = [f"--{n.replace('_', '-')}" for n in names]
    return f"{names[0]} applies" if len(names) == 1 else f"{', '.join(names)} apply"


def _schedule_of_flags(args, config):
    from nastk.oneshot.fewshot import SplitSchedule

    levels = args.splits if args.splits is not None else (2 if args.fewshot == "gm" else 1)
    if levels < 1:
        raise ConfigError(f"--splits must be at least 1, got {levels}")
    if args.split_epochs:
        epochs = _int_list(args.split_epochs, "--split-epochs")
        if len(epochs) != levels and args.splits is not None:
            raise ConfigError(f"--split-epochs lists {len(epochs)} epochs for --splits {levels}")
    else:
        epochs = [(level + 1) * config.epochs // (2 * levels) for level in range(levels)]
    if epochs[-1] >= config.epochs:
        raise ConfigError(f"the last split (after epoch {epochs[-1]}) leaves no epoch of the {config.epochs} to train the leaves")
    options = {"method": args.fewshot, "split_epochs": epochs, "epochs_after": config.epochs - epochs[-1],
               "restart": args.fewshot == "gm" and not args.no_restart}
    if args.split_decisions:
        options["candidates"] = _int_list(args.split_decisions, "--split-decisions")
    for flag, field_name in (("gm_batches", "batches"), ("gm_mode", "mode"), ("gm_rule", "rule"), ("select_archs", "select_archs")):
        if getattr(args, flag) is not None:
            options[field_name] = getattr(args, flag)
    return SplitSchedule(**options)


def _int_list(text: str, flag: str):
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated whole numbers, got {text!r}") from None


def run_train(args) -> int:
    from nastk.oneshot.trainer import train
    from nastk.run_folder import require_resumable

    if args.resume:
        require_resumable(args.run_dir, "supernet run")  # a mistyped folder is not a fresh run
    from nastk.oneshot.bossnas import is_blockwise

    config = train_config(args)
    schedule = split_schedule(args, config)
    if schedule is not None and config.stages:
        raise ConfigError("--fewshot splits one supernet during training; it does not combine with a stage schedule "
                          "(--stages or a config's 'stages')")
    if schedule is not None:
        return run_fewshot(args, config, schedule)
    if is_blockwise(config):
        return run_blockwise(args, config)
    summary = train(config, args.run_dir, resume=args.resume, device=args.device,
                    progress=not args.no_progress)
    if summary["world_size"] > 1 and not _is_main():
        return 0
    if args.format == "json":
        print_json(summary)
    else:
        method = _method_name(summary["step"], summary["sampler"])
        if summary.get("stages"):
            method = f"{len(summary['stages'])}-stage ({', '.join(s['stage'] for s in summary['stages'])})"
        print(f"trained {method} supernet for {summary['epochs']} epochs "
              f"(resumed from epoch {summary['resumed_from_epoch']}) in {summary['train_wall_s']:.1f} s; "
              f"final train loss {summary['final_train_loss']:.4f}"
              + (f", acc {summary['final_train_acc']:.2f}" if summary.get("final_train_acc") is not None else ""))
        if "arch" in summary:
            print(f"argmax architecture: {summary['arch']}")
        print(f"run folder: {summary['run_dir']}")
    return 0


def _method_name(step: str, sampler: str) -> str:
    """What a run trained, in the words of the literature where nastk knows them."""
    if ":" in step:  # a user's step as package.module:Class: its own name
        from nastk.oneshot.steps import STEPS

        step = getattr(STEPS.get(step), "name", "") or step
    if step == "single_path":
        return {"uniform": "SPOS", "space": "SPOS (space sampler)", "pada": "PA&DA"}.get(sampler, f"single-path ({sampler})")
    return {"darts": "DARTS", "sandwich": "sandwich-rule (BigNAS)", "ofa": "OFA-step"}.get(step, f"{step}-step")


def run_blockwise(args, config) -> int:
    """``--stages blockwise``: BossNAS' search (:func:`nastk.oneshot.bossnas.search`), its choices per block,
    the architecture and, where the space's benchmark has it, its accuracy."""
    from nastk.benchmarks.registry import benchmark_for, has_benchmark
    from nastk.errors import NastkError
    from nastk.oneshot.bossnas import search
    from nastk.space import get_space

    out = search(config, args.run_dir, resume=args.resume, device=args.device, progress=not args.no_progress)
    if out["train"]["world_size"] > 1 and not _is_main():
        return 0
    space = get_space(config.space)
    if has_benchmark(space.name):
        benchmark = benchmark_for(space.name)
        dataset = "cifar10" if "cifar10" in benchmark.datasets else benchmark.datasets[0]
        try:
            accuracy, protocol = benchmark.truth([space.from_str(out["arch"])], dataset)
            out["benchmark"] = {"accuracy": float(accuracy[0]), "protocol": protocol}
        except NastkError as error:  # no table installed, or it lacks the architecture
            out["benchmark"] = {"accuracy": None, "reason": str(error)}
    out["run_dir"] = str(args.run_dir)
    if args.format == "json":
        print_json(out)
        return 0
    trained = out["train"]
    print(f"BossNAS block-wise search: {out['blocks']} blocks x {config.epochs} epochs in "
          f"{trained['train_wall_s']:.1f} s of training and {out['rating_wall_s']:.1f} s of rating; "
          f"final train loss {trained['final_train_loss']:.4f}")
    for block, (ratings, chosen) in enumerate(zip(out["ratings"], out["chosen"])):
        key = ":".join(options[0] for options in chosen.values())
        print(f"block {block}: {', '.join(f'{name}={options[0]}' for name, options in chosen.items())} "
              f"(rating {ratings[key]:+.4f}, lowest of {len(ratings)} paths)")
    print(f"architecture: {out['arch']}")
    bench = out.get("benchmark")
    if bench and bench["accuracy"] is not None:
        print(f"benchmark accuracy ({bench['protocol']}): {bench['accuracy']:.2f}")
    elif bench:
        print(f"benchmark accuracy: not available ({bench['reason']})")
    print(f"run folder: {args.run_dir} (bossnas.json; rank with nastk supernet rank --run-dir {args.run_dir})")
    return 0


def run_fewshot(args, config, schedule) -> int:
    from dataclasses import replace

    from nastk.oneshot.fewshot import train_fewshot

    if config.step == "single_path" and config.held_out_fraction is None:
        config = replace(config, held_out_fraction=0.5)  # the half RSPS selects on
    out = train_fewshot(config, schedule, args.run_dir, resume=args.resume, device=args.device,
                        progress=not args.no_progress)
    if args.format == "json":
        print_json(out)
    else:
        print(f"{out['method']}: {len(out['leaves'])} sub-supernets; selected {out['arch']} from {out['leaf']} "
              f"(parameter-free operations {100 * out['parameter_free_share']:.0f}%)")
        print(f"run folder: {args.run_dir}")
    return 0


def _is_main() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def run_rank(args) -> int:
    from nastk.benchmarks.registry import has_benchmark
    from nastk.oneshot.splits import unseen_training_images
    from nastk.datasets import downsample, load_dataset, mixed
    from nastk.oneshot.ranking import (benchmark_truth, calibration_batches, default_bn_calibration, rank, ranking_of,
                                       sample_architectures, tracks_bn_statistics)
    from nastk.oneshot.block_rating import rating_evaluator
    from nastk.oneshot.trainer import load_trained
    from nastk.space import get_space

    supernet, config, epoch = load_trained(args.run_dir, args.device)
    space = get_space(config.space)
    benchmarked = has_benchmark(space.name)
    rating = rating_evaluator(space, args.run_dir)  # a finished BossNAS search ranks by its rating, not by images
    rated = rating is not None
    if args.truth_dataset is not None and not benchmarked:
        raise ConfigError(f"--truth-dataset: space {space.name!r} has no benchmark to take ground truth from")
    if args.archs:
        try:
            lines = Path(args.archs).read_text().split()
        except OSError as error:
            raise ConfigError(f"cannot read architecture list {args.archs}: {error.strerror}") from None
        archs = [space.from_str(line) for line in lines]
    else:
        archs = sample_architectures(space, args.sample, args.seed)
    if benchmarked:
        truth, protocol = benchmark_truth(space, archs, args.truth_dataset or "cifar10")
    else:
        truth, protocol = None, None
    if rated:
        x, calibration = (), []
        ranking = ranking_of(archs, [rating.evaluate(arch).value for arch in archs], truth, protocol)
    elif config.data != "labelled":  # srexport: scored as the supernet evaluator scores (image pairs: PSNR)
        from nastk.oneshot.ranking import evaluator_ranking

        ranking, scored = evaluator_ranking(space, args.run_dir, archs, truth, protocol, split=args.split,
                                            eval_size=args.eval_size, bn_calibration=args.bn_calibration,
                                            bn_recipe=args.bn_recipe, device=args.device, progress=not args.no_progress)
        x, calibration = scored["images"], scored["calibration"]
    else:
        data = downsample(load_dataset(config.dataset), config.image_size)
        if args.split == "test":
            x, y = mixed(data.x_test, data.y_test, args.eval_size)
        else:
            x, y = unseen_training_images(config, data, args.eval_size)
        batches = default_bn_calibration(supernet, config) if args.bn_calibration is None else args.bn_calibration
        calibration = calibration_batches(config, data, batches)
        ranking = rank(supernet, archs, x, y, truth, protocol, device=args.device, batch_size=args.batch_size,
                       calibration=calibration, recipe=args.bn_recipe, progress=not args.no_progress)
    out = {"run_dir": str(args.run_dir), "epoch": epoch, "sampler": config.sampler, "seed": args.seed,
           "score": "bossnas_score (minus the summed block rating)" if rated else ranking.score_text,
           "split": args.split, "eval_images": len(x), "bn_calibration_batches": len(calibration),
           "bn_calibration_images": sum(len(b) for b in calibration),
           "bn_recipe": args.bn_recipe if calibration else None, **ranking.to_dict()}
    if truth is None:
        out["note"] = (f"space {space.name} has no benchmark: architectures are ranked by their inherited-weight "
                       f"{ranking.score} alone (no ground truth, Kendall tau, Spearman rho or precision@k)")
    stem = Path(args.archs).stem if args.archs else f"sample{len(archs)}-seed{args.seed}"
    name = f"ranking-{stem}{'' if args.split == 'test' else '-' + args.split}.json"
    with atomic_write(Path(args.run_dir) / name, "w") as handle:
        json.dump(out, handle, indent=1)
    if args.format == "json":
        print_json(out)
        return 0
    recalibrated = (f", BN recalibrated on {out['bn_calibration_images']} training images ({args.bn_recipe})"
                    if calibration and tracks_bn_statistics(supernet) else "")
    if truth is None:
        print(f"{out['n']} architectures, epoch {epoch}, {len(x)} {args.split} images{recalibrated}: ranked by the "
              f"supernet's own {ranking.score}")
        print(f"note: {out['note']}")
        for row in out["ranking"][:10]:
            print(f"{row['rank']:4d}  {row[ranking.score_key]:6.2f}  {row['arch']}")
        return 0
    scored = (f"ranked by the BossNAS rating of {args.run_dir}" if rated
              else f"{len(x)} {args.split} images{recalibrated}")
    print(f"{out['n']} architectures, epoch {epoch}, {scored}: Kendall tau "
          f"{out['kendall']:.4f}, Spearman rho {out['spearman']:.4f}, " + ", ".join(f"P@{k} {v:.2f}" for k, v in out["precision_at"].items()))
    for row in out["ranking"][:10]:
        print(f"{row['rank']:4d}  {row[ranking.score_key]:6.2f}  true {row['true_accuracy']:6.2f} "
              f"(#{row['true_rank']})  {row['arch']}")
    return 0


def run_histogram(args) -> int:
    """The uniform-sampling cost histogram over complexity bins (nastk.oneshot.complexity)."""
    from nastk.oneshot.complexity import make_bins, plot_histogram, uniform_histogram
    from nastk.paths import check_writable
    from nastk.registry import get_space

    space = get_space(args.space)
    space.require("supernet")
    if args.plot:
        check_writable(Path(args.plot))
    supernet = space.supernet()
    bins = make_bins(supernet, args.metric, count=None if args.bin_step else args.bins, step=args.bin_step)
    result = {"space": space.name, **uniform_histogram(supernet, bins, args.samples, args.seed)}
    if args.plot:
        plot_histogram(result, args.plot, f"{space.name}: {args.samples} uniformly sampled children")
        result["plot"] = args.plot
    if args.format == "json":
        print_json(result)
        return 0
    print(f"{space.name}: {args.metric} of {args.samples} uniform children, range {bins.low:.4g}..{bins.high:.4g}, "
          f"mean {result['mean']:.4g}")
    for label, count, share in zip(bins.labels(), result["counts"], result["shares"]):
        print(f"  {label:>15}  {count:>8}  {share * 100:6.2f}%  {'#' * round(share * 50)}")
    return 0


def run_select(args) -> int:
    from nastk.benchmarks.registry import benchmark_for, has_benchmark
    from nastk.errors import NastkError
    from nastk.oneshot.selection import select
    from nastk.oneshot.trainer import load_trained

    pt_flags = [f for f in ("crit", "pt_interval", "lr_factor", "tune_lr_min", "edge_order", "out")
                if getattr(args, f) is not None] + [f for f in ("fix_alpha", "resume") if getattr(args, f)]
    if args.method != "pt" and pt_flags:
        raise ConfigError(f"{_flags(pt_flags)} only to --method pt")
    supernet, config, epoch = load_trained(args.run_dir, args.device)
    truth_dataset = args.truth_dataset
    if has_benchmark(config.space):  # checked before anything is selected or written, as supernet rank does
        datasets = benchmark_for(config.space).datasets
        truth_dataset = truth_dataset or ("cifar10" if "cifar10" in datasets else datasets[0])
        if truth_dataset not in datasets:
            raise ConfigError(f"--truth-dataset {truth_dataset!r}: the {config.space} benchmark has results for "
                              f"{', '.join(datasets)}")
    elif truth_dataset is not None:
        raise ConfigError(f"--truth-dataset: space {config.space!r} has no benchmark to take ground truth from")
    if args.method == "pt":
        from nastk.oneshot.perturbation import select_pt

        options = {"crit": args.crit, "interval": args.pt_interval, "lr_factor": args.lr_factor,
                   "lr_min": args.tune_lr_min, "edge_order": args.edge_order, "fix_alpha": True if args.fix_alpha else None}
        picked = select_pt(args.run_dir, args.out, resume=args.resume, device=args.device,
                           progress=not args.no_progress and args.format == "text",
                           **{k: v for k, v in options.items() if v is not None})
        out = {"run_dir": str(args.run_dir), "space": config.space, "epoch": epoch, **picked}
        arch = supernet.space.from_str(out["arch"])
    else:
        selection = select(supernet, args.method)
        out = {"run_dir": str(args.run_dir), "space": config.space, "epoch": epoch, **selection.to_dict()}
        arch = selection.arch
    if hasattr(supernet.space, "genotype_str"):
        out["genotype"] = supernet.space.genotype_str(arch)
    if isinstance(out.get("weights"), list) and len(out["weights"]) == len(supernet.decisions):
        from nastk.run_views import named_weights

        out["named_weights"] = named_weights(supernet, out["weights"])  # each weight with its op's name
    if has_benchmark(config.space):
        try:
            accuracy, protocol = benchmark_for(config.space).truth([arch], truth_dataset)
            out["benchmark"] = {"accuracy": float(accuracy[0]), "protocol": protocol}
        except NastkError as error:  # the benchmark does not hold this architecture, or no table is installed
            out["benchmark"] = {"accuracy": None, "reason": str(error)}
    folder = Path(out["folder"]) if args.method == "pt" else Path(args.run_dir)
    with atomic_write(folder / f"selection-{args.method}.json", "w") as handle:
        json.dump(out, handle, indent=1)
    if args.format == "json":
        print_json(out)
    else:
        print(f"{args.method} architecture after {epoch} epochs"
              + (f" and {out['tuning_epochs']} tuning epochs" if args.method == "pt" else "") + f": {out['arch']}")
        if "genotype" in out:
            print(out["genotype"])
        print(f"parameter-free operations: {100 * out['parameter_free_share']:.0f}%")
        bench = out.get("benchmark")
        if bench and bench["accuracy"] is not None:
            print(f"benchmark accuracy ({bench['protocol']}): {bench['accuracy']:.2f}")
        elif bench:
            print(f"benchmark accuracy: not available ({bench['reason']})")
    return 0
