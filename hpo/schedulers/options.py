"""What a study file's ``scheduler:`` section may set: each scheduler declares its options once, as a
:class:`SchedulerOptions` model beside its core (``Core.Options``), and the study-file schema is built from
those (:mod:`hpo.study.spec`). A documented option is therefore always a live one: the core receives it
(:meth:`SchedulerOptions.core_options`) and nothing else can be written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from hpo.space import FieldError

if TYPE_CHECKING:
    from hpo.study.spec import FidelitySpec


class SchedulerOptions(BaseModel):
    """Options of one scheduler (frozen, unknown keys rejected). Subclasses add fields with defaults,
    docstrings that say what each does, and :meth:`check_fidelity` for rules involving the fidelity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def core_options(self) -> dict[str, Any]:
        """Keyword arguments for the core's constructor (by default: every option, by name)."""
        return self.model_dump(exclude={"kind"})

    def check_fidelity(self, fidelity: FidelitySpec) -> None:
        """Raise :class:`hpo.space.FieldError` for an option that does not fit ``fidelity``."""


def needs_two_rungs(kind: str, fidelity: FidelitySpec) -> None:
    """Schedulers that compare configurations at rungs need at least two: fidelity.max >= eta * min."""
    low, high, eta = fidelity.min, fidelity.max, fidelity.eta
    if high < eta * low:
        raise FieldError(
            ("fidelity", "max"),
            f"must be >= eta * min ({eta} * {low} = {eta * low}) for scheduler '{kind}' (at least two "
            f"rungs), got {high}",
        )
