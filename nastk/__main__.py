"""``python -m nastk`` is the ``nastk`` command."""
import sys

from nastk.cli import main

sys.exit(main())
