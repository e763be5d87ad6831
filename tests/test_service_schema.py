"""Property-based run of schemathesis against the service's OpenAPI schema: whatever it sends, no answer is
a server error (5xx), and the schema it reads is complete enough to generate requests for every operation."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from service_store import write_study

from service.api import ServiceSettings, create_app

TOKEN = "schema-token"


# The schema is loaded at import, before any fixture exists; the folder goes when the process ends (also
# when collection imports this module but no test of it runs).
ROOT = Path(tempfile.mkdtemp(prefix="agvp-schema-"))
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)


def _app() -> object:
    write_study(ROOT, "alpha")
    write_study(ROOT, "beta", status="running")
    return create_app(ServiceSettings(store=ROOT, token=TOKEN))


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


def test_every_operation_is_in_the_schema() -> None:
    operations = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert {
        ("GET", "/api/health"),
        ("GET", "/api/studies"),
        ("GET", "/api/studies/{study_id}"),
        ("GET", "/api/studies/{study_id}/trials"),
        ("GET", "/api/studies/{study_id}/best"),
        ("GET", "/api/studies/{study_id}/best.yaml"),
        ("GET", "/api/studies/{study_id}/trials/{trial_id}/curve"),
        ("GET", "/api/studies/{study_id}/curves"),
        ("GET", "/api/studies/{study_id}/rungs"),
        ("POST", "/api/studies"),
        ("POST", "/api/studies/{study_id}/stop"),
    } <= operations


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"} if case.method == "POST" else None
    case.call_and_validate(headers=headers, checks=[not_a_server_error])
