"""Options of Ray Tune's own schedulers, ``ray-asha`` and ``ray-hyperband``: baselines with no core here
(Ray decides; :func:`hpo.ray_backend.adapter.ray_scheduler` builds them from these options)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hpo.fields import Count
from hpo.schedulers.options import SchedulerOptions
from hpo.space import FieldError


class RayAshaOptions(SchedulerOptions):
    """Ray Tune's ``ASHAScheduler`` (stopping only, no promotion, no persisted state).

    ``grace_period`` and ``reduction_factor`` are Ray's names for r_min and eta; ``None`` takes them from
    ``fidelity`` (Ray's own defaults, 1 and 4 with ``max_t=100``, would silently differ from the study).
    """

    grace_period: Count | None = Field(None, ge=1)
    reduction_factor: Count | None = Field(None, ge=2, le=100)

    def check_fidelity(self, fidelity: Any) -> None:
        if self.grace_period is not None and self.grace_period >= fidelity.max:
            raise FieldError(
                ("scheduler", "grace_period"),
                f"must be < fidelity.max ({fidelity.max}) or nothing is ever stopped, "
                f"got {self.grace_period}",
            )


class RayHyperbandOptions(SchedulerOptions):
    """Ray Tune's ``HyperBandScheduler`` (synchronous; its state is lost on resume)."""


#: Ray's schedulers by study-file kind.
RAY_NATIVE_OPTIONS: dict[str, type[SchedulerOptions]] = {
    "ray-asha": RayAshaOptions,
    "ray-hyperband": RayHyperbandOptions,
}
