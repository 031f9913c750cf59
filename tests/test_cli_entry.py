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
