"""Trainers behind one small protocol, plus the AG-VPReID data layer and evaluation protocol.

Nothing in this package imports Ray: the HPO layer (``hpo``) wraps what lives here.
"""

from trainers.errors import AgvpError, DataError

__all__ = ["AgvpError", "DataError"]
