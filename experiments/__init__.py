"""The studies of ``docs/studies.md``, one module each, sharing ``common`` and the runner.

``python -m experiments --list``, ``python -m experiments s1 [--quick]``,
``python -m experiments all [--record]``. Each module defines ``NAME``, ``TITLE`` and
``run(out_dir, quick=False, seed=0, use_torch=True, device="cpu") -> dict``.
"""

from .registry import STUDIES, load_study, resolve

__all__ = ["STUDIES", "load_study", "resolve"]
