"""The custom-space tutorial (examples/custom_space.py) runs as written: RE, BO, SPOS and DARTS on a
space and supernet defined in one file, through the public API only."""
import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_space.py"


@pytest.mark.usefixtures("one_torch_thread")
def test_custom_space_example_runs_every_strategy(capsys):
    spec = importlib.util.spec_from_file_location("custom_space_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()
    out = capsys.readouterr().out
    space = module.TinySpace()
    for label in ("re ", "bo-tpe ", "DARTS "):
        line = next(line for line in out.splitlines() if line.startswith(label))
        space.from_str(line.split(": ", 1)[1])  # a valid architecture of the user's space
    spos = next(line for line in out.splitlines() if line.startswith("SPOS    supernet test acc (monitoring)"))
    assert float(spos.split()[-1]) > 40  # clearly above chance (10%): the example teaches something that works
    definition = EXAMPLE.read_text().split("SPACES.register")[0].split("\nOPS = ")[1]
    assert len([line for line in definition.splitlines() if line.strip()]) < 60
