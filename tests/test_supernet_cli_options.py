"""Every flag of ``nastk supernet train`` that comes from a declaration (the steps' OPTIONS, the spaces'
SUPERNET_OPTIONS) and every new general flag refuses a bad value with one line, exit 2, nothing written;
so do bad values in a --config file."""
import pytest

from nastk.cli import build_parser, main
from nastk.options import Bool, Float, Int, Text

NEW_GENERAL = {"--bn-recalibration": "-1", "--eval-batch-size": "0", "--grad-clip": "-0.5", "--stages": "bignas",
               "--lr-power": "0.5", "--held-out-fraction": "1.5"}


def declared_flags():
    from nastk.commands.supernet import _space_declarations, _step_declarations

    flags = {}
    for owners in (_step_declarations(), _space_declarations()):
        for name, declarations in owners.items():
            flags["--" + name.replace("_", "-")] = declarations[0][1].value
    return flags


def bad_value(value_type):
    if isinstance(value_type, Bool):
        return None  # a --flag / --no-flag pair takes no value
    if isinstance(value_type, (Int, Float)):
        return "lots"
    if isinstance(value_type, Text) and value_type.choices:
        return "no-such-choice"
    return None


def test_the_declared_flags_exist():
    flags = declared_flags()
    assert {"--random-children", "--inplace-distillation", "--order", "--teacher", "--C", "--N", "--layers",
            "--width-mult", "--bn-momentum"} <= set(flags)
    help_text = build_parser().parse_known_args(["supernet", "train", "--run-dir", "x"])  # populates the flags
    assert help_text


@pytest.mark.parametrize("flag, value", sorted(
    [(f, bad_value(t)) for f, t in declared_flags().items() if bad_value(t) is not None] + list(NEW_GENERAL.items())))
def test_bad_flag_values_are_one_line_and_write_nothing(tmp_path, capsys, flag, value):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["supernet", "train", "--space", "mobilenet", "--step", "sandwich", "--dataset", "digits",
              "--run-dir", str(run), flag, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and not run.exists()


@pytest.mark.parametrize("text, fragment", [
    ("epochs: ten\n", "option epochs"),
    ("step: sandwich\nstep_options: {random_children: -1}\n", "option random_children"),
    ("step: sandwich\nstep_options: {colour: 1}\n", "has no option(s) colour"),
    ("space: mobilenet\nsupernet: {bn_momentum: 2}\n", "option bn_momentum"),
    ("space: mobilenet\nsupernet: {depth: 2}\n", "mobilenet supernet has no option 'depth'"),
    ("stages: fast\n", "option stages"),
    ("stages: [{name: a}]\n", "stage 0 needs epochs"),
    ("stages: [{name: a, epochs: 1, allowed: 3}]\n", "allowed must map"),
    ("stages: [{name: a, epochs: 1, sort_channels: x}]\n", "sort_channels must be a list"),
    ("stages: [{name: a, epochs: 1, overrides: {lr: -1}}]\n", "option lr"),
    ("stages: [{name: a, epochs: 1, trainable: [1]}]\n", "trainable must be a list"),
    ("colour: red\n", "unknown supernet training option(s) colour"),
    ("- 1\n", "must hold a mapping"),
    ("step: nosuchstep\n", "unknown training step"),
    ("sampler: nosuch\n", "unknown path sampler"),
])
def test_bad_config_values_are_one_line_and_write_nothing(tmp_path, capsys, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: digits\n" + text if not text.startswith("-") else text)
    run = tmp_path / "run"
    assert main(["supernet", "train", "--config", str(path), "--run-dir", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err
    assert not run.exists()


def test_one_nb201_size_default_recorded_in_new_runs_and_old_runs_keep_theirs(tmp_path):
    """``--C``/``--N`` default to the small network a search trains (C=8, N=1) in ``supernet train`` too; a
    new run writes them into its config, and a run made before (no sizes in its config) keeps NB201's
    C=16, N=5, which ``supernet()`` still builds, so its checkpoint loads as trained."""
    import json

    from nastk.commands.supernet import train_config
    from nastk.oneshot.trainer import build_supernet
    from nastk.space import get_space

    parser = build_parser()

    def config_of(*argv):
        args, _ = parser.parse_known_args(["supernet", "train", *argv])
        return train_config(args)

    new = config_of("--space", "nb201", "--dataset", "digits", "--run-dir", str(tmp_path / "new"))
    assert new.supernet == {"C": 8, "N": 1}
    assert config_of("--space", "nb201", "--N", "3", "--run-dir", str(tmp_path / "n3")).supernet == {"C": 8, "N": 3}
    assert config_of("--space", "darts", "--run-dir", str(tmp_path / "d")).supernet == {}  # its defaults are supernet()'s
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({**new.to_dict(), "supernet": {}}))
    resumed = config_of("--run-dir", str(old), "--resume")
    assert resumed.supernet == {}
    nb201 = get_space("nb201")
    old_size = sum(p.numel() for p in build_supernet(resumed, 10).parameters())
    assert old_size == sum(p.numel() for p in nb201.supernet(C=16, N=5).parameters())
    assert sum(p.numel() for p in build_supernet(new, 10).parameters()) < old_size
