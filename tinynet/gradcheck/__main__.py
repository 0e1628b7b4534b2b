"""``python -m tinynet.gradcheck``: the same as ``tinynet gradcheck``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
