"""Running the ``nastk`` command in process, as the tests do: exit status (argparse's usage errors
included), stdout and stderr."""
from nastk.cli import main


def run_cli(capsys, *argv):
    """``run_cli(capsys, "search", "--budget", "2")`` or ``run_cli(capsys, ["search", ...])``."""
    args = list(argv[0]) if len(argv) == 1 and isinstance(argv[0], (list, tuple)) else list(argv)
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err
