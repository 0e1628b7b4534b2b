"""The fast kernels: the same functions as :mod:`tinynet.functional`, faster.

Placeholder while the kernels move here: every name is the reference one.
"""

from .. import *  # noqa: F401,F403
