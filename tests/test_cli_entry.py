"""The command's entry points: ``python -m nastk``, ``--version``, and a ``--help`` that imports no torch."""
import subprocess
import sys

from nastk import __version__


def _python(*argv):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)


def test_python_m_nastk_and_version():
    done = _python("-m", "nastk", "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"nastk {__version__}"


def test_help_builds_every_command_without_importing_torch():
    code = ("import sys; from nastk.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'scipy', 'optuna', 'matplotlib') if m in sys.modules))")
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert _python("-m", "nastk", "supernet", "train", "--help").returncode == 0


def test_unavailable_or_malformed_device_is_one_line_before_any_run_folder(tmp_path, capsys):
    import pytest
    import torch

    from nastk.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for argv in (["search", "--budget", "2"], ["supernet", "train", "--dataset", "digits"]):
        for device, message in (("cuda", "CUDA is not available here"), ("cuda:7", "CUDA is not available here"),
                                ("gpu0", "is not a torch device")):
            run = tmp_path / f"{argv[0]}-{device}"
            assert main(argv + ["--device", device, "--run-dir", str(run), "--no-progress"]) == 2
            err = capsys.readouterr().err
            assert message in err and err.count("\n") == 1 and not run.exists()


def test_every_option_with_a_default_shows_it_in_help():
    import argparse

    from nastk.cli import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub.populate())

    missing, checked = [], 0
    for parser in parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if (action.option_strings and action.default not in (None, argparse.SUPPRESS)
                    and not isinstance(action.default, bool)):
                checked += 1
                if "default" not in formatter._expand_help(action):
                    missing.append(f"{parser.prog} {action.option_strings[0]}")
    assert checked >= 40 and not missing
