"""Number types for study-file fields, shared by every section (:mod:`hpo.study.spec`) and the scheduler
options declared beside each scheduler (:mod:`hpo.schedulers.options`).

pydantic's lax mode reads ``true`` as 1 and ``3.5`` as an error message about "parsing"; a study file
deserves plainer rules: a count is a whole number (``3`` or ``3.0``), a real is finite, and neither is a
boolean.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AllowInfNan, BeforeValidator


def no_bool(value: Any) -> Any:
    """Reject a boolean where a number belongs (always a slip)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {value}")
    return value


def whole(value: Any) -> Any:
    """A count: ``3`` or ``3.0``; never a boolean, a fraction or a float too large to be exact."""
    value = no_bool(value)
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > 2**53:
            raise ValueError(f"is too large to be a count, got {value:g}")
        if not value.is_integer():
            raise ValueError(f"must be a whole number (an integer), got {value:g}")
        return int(value)
    return value


#: A whole number (add bounds with ``Field(ge=..., le=...)``).
Count = Annotated[int, BeforeValidator(whole)]
#: A finite real number.
Real = Annotated[float, AllowInfNan(False), BeforeValidator(no_bool)]
