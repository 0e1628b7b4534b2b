"""``python -m tinynet.gradcheck``: the same as ``tinynet gradcheck``."""

import sys

from ..cliargs import run_command
from . import main

if __name__ == "__main__":
    sys.exit(run_command(main))
