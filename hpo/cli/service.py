"""``agvp-hpo serve`` (REST API + dashboard over a results root) and ``agvp-hpo submit`` (a study as a Ray
job on a cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpo.cli._common import console, fail, user_errors


def serve(
    store: Annotated[Path, typer.Option("--store", help="Results root holding the study folders.")] = Path(
        "results"
    ),
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", envvar="AGVP_API_TOKEN", help="Bearer token for writes (default: writes disabled)."
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", envvar="AGVP_RAY_ADDRESS", help="Submit studies as Ray jobs there."),
    ] = None,
) -> None:
    """Serve the REST API and the dashboard page for the studies under --store."""
    import uvicorn

    from service.api import ServiceSettings, create_app

    with user_errors():
        if not store.is_dir():
            raise fail(f"--store {store} is not a folder")
        # An empty token (an unset variable in docker-compose) means writes disabled, not an empty password.
        app = create_app(ServiceSettings(store=store, token=token or None, ray_address=ray_address or None))
    console.print(
        f"serving {store} on http://{host}:{port}/ (API docs at /docs); writes {'on' if token else 'off'}"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def submit(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="Study file.")],
    address: Annotated[str, typer.Option("--address", help="Ray dashboard address, e.g. http://HEAD:8265.")],
    name: Annotated[str | None, typer.Option("--name", help="Study name (default: the file's name).")] = None,
) -> None:
    """Submit a study to a Ray cluster as a Ray job; prints the job id and how to follow it."""
    from ray.job_submission import JobSubmissionClient

    from hpo.ray_backend.jobs import submit_study_job
    from hpo.study import load_study, resolve_study_path

    with user_errors():
        spec = load_study(resolve_study_path(spec_path))
        if name is not None:
            spec = type(spec).model_validate({**spec.to_dict(), "name": name})
        try:
            client = JobSubmissionClient(address)
        except Exception as error:  # connection refused, not a Ray dashboard, ...
            raise fail(f"--address {address}: cannot reach the Ray job server ({error})") from None
        try:
            job_id = submit_study_job(client, spec)
        except RuntimeError as error:  # the job server refused (HTTP 4xx / 5xx), retried if transient
            raise fail(f"--address {address}: the Ray job server did not take the study ({error})") from None
    console.print(f"submitted study {spec.name} as Ray job {job_id}", soft_wrap=True)
    console.print(f"follow it: ray job logs --address {address} --follow {job_id}", soft_wrap=True)
    console.print(f"results: {spec.storage.root}/{spec.name} on the cluster's shared volume", soft_wrap=True)


def list_jobs(address: str) -> None:
    """The Ray jobs of a cluster that run agvp-hpo studies (for ``status --address``)."""
    from ray.job_submission import JobSubmissionClient
    from rich.table import Table

    client = JobSubmissionClient(address)
    table = Table(title=f"agvp-hpo jobs on {address}", title_justify="left")
    for column in ("job", "study", "status", "message"):
        table.add_column(column, no_wrap=column != "message", overflow="fold")
    for job in client.list_jobs():
        study = (job.metadata or {}).get("agvp_study")
        if study is None:
            continue
        table.add_row(str(job.submission_id or job.job_id), study, str(job.status), (job.message or "")[:60])
    console.print(table)
