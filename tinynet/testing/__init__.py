"""Testing helpers: the strict CPU stand-in for CuPy (:mod:`tinynet.testing.strictxp`).

The test suite's ``xp`` fixture (``tests/conftest.py``) runs every layer test on NumPy,
on this stand-in and on CuPy when a GPU is present. See ``docs/backend.md``.
"""

from . import strictxp

__all__ = ["strictxp"]
