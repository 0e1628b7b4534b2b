"""``python -m tinynet.parity``: the same as ``tinynet parity``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
