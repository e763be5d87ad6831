"""The REST API and dashboard: ``create_app(settings)``, served by ``agvp-hpo serve``.

Reads (no authentication) answer from the Parquet store through :class:`service.reader.StoreReader`, so a
request never re-reads unchanged files. Writes (submit a study, stop a study) need ``Authorization: Bearer
<token>``: 401 without a token, 403 with a wrong one (compared in constant time), 403 when the service has
no token configured (writes disabled). Every error is a JSON body ``{"status": N, "message": "..."}``.
"""

from __future__ import annotations

import hmac
import itertools
import json
import math
import time
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hpo.study import StudyError, dump_study, loads_study
from hpo.study.analysis import best_config_yaml
from hpo.study.folder import StudyFolder
from hpo.study.lock import lock_holder
from hpo.study.validate import validate_study
from service.launcher import Launcher, submission_paths
from service.reader import MISSING, BadRequest, NotFound, StoreReader, check_study_id

API_VERSION = "1"


@dataclass(frozen=True)
class ServiceSettings:
    """``store``: the results root; ``token``: bearer token for writes (None: writes disabled);
    ``ray_address``: submit studies as Ray jobs there (None: as local subprocesses); ``workdir``: where
    local runs start (relative paths in study files resolve against it)."""

    store: Path
    token: str | None = None
    ray_address: str | None = None
    workdir: Path | None = None


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# -- response models (the OpenAPI schema) ---------------------------------------------------------------


class ErrorBody(BaseModel):
    status: int
    message: str


class Best(BaseModel):
    value: float
    trial_id: int
    resource: int


class FailedTrials(BaseModel):
    count: int = Field(description="trials that failed")
    errors: list[dict[str, Any]] = Field(description="the first distinct error messages, with trials each")


class StudySummary(BaseModel):
    id: str
    status: str = Field(description="running | finished | stopped | failed | interrupted (driver died)")
    reason: str | None = None
    error: str | None = None
    trials: dict[str, int] = Field(description="trials by state")
    best: Best | None = None
    metric: str
    mode: str
    budget_used: dict[str, float]
    failures: FailedTrials
    started: float | None = None
    updated: float | None = None
    ended: float | None = None


class StudyDetail(StudySummary):
    spec: dict[str, Any]
    launch: dict[str, Any] | None = Field(None, description="how the service started it, if it did")
    best_so_far: list[dict[str, float]] = Field(description="(total_resource, value) where the best improved")


class Trial(BaseModel):
    trial_id: int
    status: str
    resource: int = Field(description="highest epoch reported")
    value: float | None = Field(description="objective at that epoch (null: none)")
    bracket: int
    reports: int
    params: dict[str, Any]


class TrialPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[Trial]


class BestConfigs(BaseModel):
    metric: str
    mode: str
    items: list[Trial]
    yaml: str | None = Field(description="the best configuration as a trainer config (agvp-hpo train)")


class CurvePoint(BaseModel):
    resource: int
    value: float | None
    decision: str
    status: str
    rung: int
    time: float
    node: str = Field("", description="where the trial ran this epoch (empty: unknown)")
    checkpoint: str = Field("", description="the checkpoint saved at this epoch (empty: none)")
    error: str = Field("", description="why the trial failed (failed rows only)")


class Curve(BaseModel):
    trial_id: int
    bracket: int
    params: dict[str, Any]
    points: list[CurvePoint]


class RungOccupancy(BaseModel):
    bracket: int
    rung: int
    resource: int
    trials: int
    advanced: int = Field(description="trials that went on to more epochs")


class Importance(BaseModel):
    param: str
    importance: float = Field(description="share of the objective's variation (the items sum to 1)")


class Importances(BaseModel):
    fidelity: int | None = Field(description="the trials compared are those that reported at this fidelity")
    trials: int = Field(description="how many trials that is")
    method: str
    items: list[Importance] = Field(description="most important first; empty when it cannot be computed")
    note: str | None = Field(None, description="why the items are empty")


class Health(BaseModel):
    status: Literal["ok"]
    store: str
    studies: int
    writes_enabled: bool
    version: str


class Submitted(BaseModel):
    id: str
    how: str
    ref: str
    message: str


# -- helpers ----------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _trial(row: Any) -> dict[str, Any]:
    return {
        "trial_id": int(row.trial_id),
        "status": str(row.status),
        "resource": int(row.resource),
        "value": _clean(float(row.value)) if row.value is not None else None,
        "bracket": int(row.bracket),
        "reports": int(row.reports),
        "params": {k: _clean(v) for k, v in row.params.items()},
    }


def _dumps(payload: Any) -> bytes:
    """Compact JSON, as every answer is sent (and cached)."""
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def _json(payload: Any) -> Response:
    return Response(_dumps(payload), media_type="application/json")


def _text(value: Any) -> str:
    """A string column's cell: missing (None / NaN) reads as empty."""
    return value if isinstance(value, str) else ""


def _curve(trial_id: int, rows: Any) -> dict[str, Any]:
    """One trial's learning curve from its result rows (in report order)."""
    first = rows.iloc[0]
    return {
        "trial_id": int(trial_id),
        "bracket": int(first["bracket"]),
        "params": json.loads(first["config"]),
        "points": [
            {
                "resource": int(r.resource),
                "value": _clean(float(r.value)),
                "decision": str(r.decision),
                "status": str(r.status),
                "rung": int(r.rung),
                "time": float(r.time),
                "node": _text(getattr(r, "node", "")),
                "checkpoint": _text(getattr(r, "checkpoint", "")),
                "error": _text(getattr(r, "error", "")),
            }
            for r in rows.itertuples(index=False)
        ],
    }


ERRORS = {
    400: {"model": ErrorBody, "description": "malformed request"},
    404: {"model": ErrorBody, "description": "no such study or trial"},
}
WRITE_ERRORS = {
    401: {"model": ErrorBody, "description": "no bearer token"},
    403: {"model": ErrorBody, "description": "wrong token, or writes disabled"},
    409: {"model": ErrorBody, "description": "conflicts with the study's state"},
    422: {"model": ErrorBody, "description": "invalid study file"},
}

StudyId = Annotated[str, PathParam(description="study name (letters, digits, '-', '_')", max_length=200)]


def create_app(settings: ServiceSettings) -> FastAPI:
    reader = StoreReader(settings.store)
    launcher = Launcher(settings.store, ray_address=settings.ray_address, workdir=settings.workdir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        launcher.shutdown()

    app = FastAPI(
        title="agvp-hpo",
        version=API_VERSION,
        description="Status, trials and best configurations of agvp-hpo studies; submit and stop studies.",
        lifespan=lifespan,
    )
    app.state.reader = reader
    app.state.launcher = launcher

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"status": error.status, "message": error.message}, status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"status": error.status_code, "message": str(error.detail)},
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body",))
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return JSONResponse({"status": 422, "message": message}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, error: NotFound) -> JSONResponse:
        message = str(error)
        study = request.path_params.get("study_id")
        if isinstance(study, str) and message.startswith("no study named"):
            message = launcher.why_not_started(study) or message  # submitted here, but no folder yet
        return JSONResponse({"status": 404, "message": message}, status_code=404)

    @app.exception_handler(BadRequest)
    async def _bad(request: Request, error: BadRequest) -> JSONResponse:
        return JSONResponse({"status": 400, "message": str(error)}, status_code=400)

    async def answer(study_id: str, key: Any, compute: Any) -> Response:
        """A cached JSON body: served on the event loop when the files are unchanged (a few stat calls),
        computed in the thread pool otherwise (so a recomputation never blocks other requests)."""
        body = reader.peek(study_id, key)
        if body is MISSING:
            body = await run_in_threadpool(reader.cached, study_id, key, compute)
        return Response(body, media_type="application/json")

    def require_token(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "this endpoint needs 'Authorization: Bearer <token>'")
        if settings.token is None:
            raise ApiError(403, "writes are disabled: start the service with --token or AGVP_API_TOKEN")
        if not hmac.compare_digest(token.encode(), settings.token.encode()):
            raise ApiError(403, "wrong token")

    # -- reads -------------------------------------------------------------------------------------------

    @app.get("/api/health", response_model=Health, tags=["reads"])
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "store": str(settings.store),
            "studies": len(reader.study_ids()),
            "writes_enabled": settings.token is not None,
            "version": API_VERSION,
        }

    @app.get("/api/studies", response_model=list[StudySummary], tags=["reads"])
    def list_studies() -> Response:
        return _json([reader.summary(study_id) for study_id in reader.study_ids()])

    @app.get("/api/studies/{study_id}", response_model=StudyDetail, responses=ERRORS, tags=["reads"])
    def study_status(study_id: StudyId) -> Response:
        def detail(folder: StudyFolder) -> bytes:
            payload = {
                **reader.summary(study_id),
                "spec": reader.metadata(study_id).get("spec", {}),
                "launch": launcher.state(study_id),
                "best_so_far": reader.best_so_far(study_id),
            }
            return _dumps(payload)

        body = reader.cached(study_id, "detail", detail)
        if study_id in launcher.launches:  # the launch state changes without the files changing
            payload = json.loads(body)
            payload["launch"] = launcher.state(study_id)
            body = _dumps(payload)
        return Response(body, media_type="application/json")

    @app.get("/api/studies/{study_id}/trials", response_model=TrialPage, responses=ERRORS, tags=["reads"])
    async def trials(
        study_id: StudyId,
        state: Annotated[
            Literal["running", "paused", "completed", "stopped", "failed"] | None,
            Query(description="only trials in this state"),
        ] = None,
        rung: Annotated[
            int | None, Query(ge=0, le=1000, description="only trials that reached this rung")
        ] = None,
        sort: Annotated[Literal["trial_id", "value", "resource", "reports"], Query()] = "trial_id",
        order: Annotated[Literal["asc", "desc"], Query()] = "asc",
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> Response:
        def page(folder: StudyFolder) -> bytes:
            table = reader.trials(study_id)
            if state is not None:
                table = table[table["status"] == state]
            if rung is not None:
                rows = reader.rows(study_id)
                reached = set(rows[rows["rung"] == rung]["trial_id"]) if not rows.empty else set()
                table = table[table["trial_id"].isin(reached)]
            table = table.sort_values(
                [sort, "trial_id"], ascending=[order == "asc", True], na_position="last", kind="stable"
            )
            items = [_trial(row) for row in table.iloc[offset : offset + limit].itertuples(index=False)]
            payload = {"total": len(table), "offset": offset, "limit": limit, "items": items}
            return _dumps(payload)

        return await answer(study_id, ("trials", state, rung, sort, order, offset, limit), page)

    @app.get("/api/studies/{study_id}/best", response_model=BestConfigs, responses=ERRORS, tags=["reads"])
    async def best(study_id: StudyId, k: Annotated[int, Query(ge=1, le=100)] = 5) -> Response:
        def compute(folder: StudyFolder) -> bytes:
            metric, mode = reader.objective(study_id)
            ranked = reader.best(study_id, k)
            items = [_trial(row) for row in ranked.itertuples(index=False)]
            text = _best_yaml(folder, items[0]["params"]) if items else None
            payload = {"metric": metric, "mode": mode, "items": items, "yaml": text}
            return _dumps(payload)

        return await answer(study_id, ("best-json", k), compute)

    @app.get(
        "/api/studies/{study_id}/best.yaml",
        response_class=PlainTextResponse,
        responses={**ERRORS, 200: {"content": {"application/yaml": {}}}},
        tags=["reads"],
    )
    def best_yaml(study_id: StudyId) -> Response:
        ranked = reader.best(study_id, 1)
        if ranked.empty:
            raise ApiError(404, f"study {study_id!r} has no trial with a value yet")
        folder = reader.folder(study_id)
        text = reader.cached(study_id, "best-yaml", lambda f: _best_yaml(folder, ranked.iloc[0]["params"]))
        return PlainTextResponse(text, media_type="application/yaml")

    @app.get(
        "/api/studies/{study_id}/trials/{trial_id}/curve",
        response_model=Curve,
        responses=ERRORS,
        tags=["reads"],
    )
    def curve(study_id: StudyId, trial_id: Annotated[int, PathParam(ge=0, le=10_000_000)]) -> Response:
        return _json(_curve(trial_id, reader.curve(study_id, trial_id)))

    @app.get(
        "/api/studies/{study_id}/curves",
        response_model=list[Curve],
        responses=ERRORS,
        tags=["reads"],
        description="Every trial's learning curve (for the dashboard), at most `limit` trials.",
    )
    async def curves(study_id: StudyId, limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> Response:
        def compute(folder: StudyFolder) -> bytes:
            rows = reader.rows(study_id)
            if rows.empty:
                return _dumps([])
            groups = itertools.islice(rows.groupby("trial_id", sort=True), limit)
            return _dumps([_curve(int(trial_id), group) for trial_id, group in groups])

        return await answer(study_id, ("curves", limit), compute)

    @app.get(
        "/api/studies/{study_id}/rungs", response_model=list[RungOccupancy], responses=ERRORS, tags=["reads"]
    )
    def rungs(study_id: StudyId) -> Response:
        return _json(reader.rungs(study_id))

    @app.get(
        "/api/studies/{study_id}/failures", response_model=FailedTrials, responses=ERRORS, tags=["reads"]
    )
    def failed_trials(study_id: StudyId) -> Response:
        """How many trials failed, and the first distinct error messages."""
        return _json(reader.failures(study_id))

    @app.get(
        "/api/studies/{study_id}/importance",
        response_model=Importances,
        responses=ERRORS,
        tags=["reads"],
        description="Parameter importance (Optuna's PED-ANOVA evaluator, as `agvp-hpo plot` draws it) "
        "over the trials that reported at one fidelity: `fidelity`, else the highest one at least 3 trials "
        "reached.",
    )
    async def importance(
        study_id: StudyId, fidelity: Annotated[int | None, Query(ge=0, le=10_000_000)] = None
    ) -> Response:
        def compute(folder: StudyFolder) -> bytes:
            return _dumps(_importances(folder, reader.rows(study_id), reader.status(study_id), fidelity))

        return await answer(study_id, ("importance", fidelity, reader.status(study_id)), compute)

    # -- writes ------------------------------------------------------------------------------------------

    @app.post(
        "/api/studies",
        response_model=Submitted,
        status_code=202,
        responses=WRITE_ERRORS,
        tags=["writes"],
        dependencies=[Depends(require_token)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "a study file (YAML), as `agvp-hpo run` takes it",
                "content": {"application/yaml": {"schema": {"type": "string"}}},
            }
        },
    )
    async def submit(request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(422, "the study file must be UTF-8 text") from None
        try:
            spec = loads_study(text, source="<submitted study>")
            validate_study(spec, source="<submitted study>")  # the same checks as `agvp-hpo validate`
        except StudyError as error:
            raise ApiError(422, str(error)) from None
        root = settings.store.resolve()
        spec = spec.model_copy(update={"storage": spec.storage.model_copy(update={"root": root})})
        check_study_id(spec.name)
        folder = StudyFolder.of(root, spec.name)
        if folder.exists() or lock_holder(folder.path) is not None or spec.name in launcher.launches:
            raise ApiError(409, f"study {spec.name!r} already exists; choose another name")
        spec_file, _ = submission_paths(root, spec.name)
        spec_file.parent.mkdir(parents=True, exist_ok=True)
        spec_file.write_text(dump_study(spec), encoding="utf-8")
        try:
            launch = launcher.launch(spec.name, spec_file)
        except Exception as error:  # the Ray job server refused, or the process could not start
            spec_file.unlink(missing_ok=True)
            raise ApiError(503, f"could not start the study: {error}") from None
        return {
            "id": spec.name,
            "how": launch.how,
            "ref": launch.ref,
            "message": f"study {spec.name} submitted ({launch.how} {launch.ref})",
        }

    @app.post(
        "/api/studies/{study_id}/stop",
        status_code=202,
        responses={**ERRORS, **WRITE_ERRORS},
        tags=["writes"],
        dependencies=[Depends(require_token)],
    )
    def stop(study_id: StudyId) -> dict[str, str]:
        folder = reader.folder(study_id)
        if reader.status(study_id) != "running":
            raise ApiError(409, f"study {study_id!r} is {reader.status(study_id)}, not running")
        folder.stop_file.write_text(f"stop requested at {time.time():.0f}\n", encoding="utf-8")
        return {"message": f"stop requested for study {study_id}"}

    # -- dashboard ---------------------------------------------------------------------------------------

    static = resources.files("service") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    return app


IMPORTANCE_METHOD = "optuna PED-ANOVA"


def _importances(folder: StudyFolder, rows: Any, status: str, fidelity: int | None) -> dict[str, Any]:
    """Optuna's importance on the study exported to memory at one fidelity (see :mod:`hpo.study.plots`)."""
    import optuna

    from hpo.study import load_study
    from hpo.study.optuna_export import OptunaExportError, to_memory_study
    from hpo.study.plots import VIEW_MIN_TRIALS, PlotError, importance_evaluator, view_fidelity

    empty: dict[str, Any] = {"fidelity": fidelity, "trials": 0, "method": IMPORTANCE_METHOD, "items": []}
    if rows.empty or not rows["value"].notna().any():
        return {**empty, "note": "no trial has reported a value yet"}
    try:
        chosen = view_fidelity(rows, fidelity)
    except PlotError as error:
        raise BadRequest(str(error).replace("--fidelity", "fidelity")) from None
    try:
        spec = load_study(folder.spec_file)
    except (StudyError, OSError) as error:
        return {**empty, "fidelity": chosen, "note": f"the study file cannot be read: {error}"}
    try:
        view = to_memory_study(
            rows, spec, finished=status == "finished", live=status == "running", fidelity=chosen
        )
    except OptunaExportError as error:  # rows that do not fit the study's search space
        return {**empty, "fidelity": chosen, "note": str(error)}
    trials = len(view.get_trials(deepcopy=False))
    if trials < VIEW_MIN_TRIALS:
        note = f"{trials} trial(s) reported at {chosen}: too few to compare (at least {VIEW_MIN_TRIALS})"
        return {**empty, "fidelity": chosen, "trials": trials, "note": note}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its evaluators experimental
            scores = optuna.importance.get_param_importances(view, evaluator=importance_evaluator(optuna))
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "cannot be computed"
        return {**empty, "fidelity": chosen, "trials": trials, "note": reason}
    items = [{"param": name, "importance": _clean(float(score)) or 0.0} for name, score in scores.items()]
    note = None if items else "no searched parameter to rank"
    return {"fidelity": chosen, "trials": trials, "method": IMPORTANCE_METHOD, "items": items, "note": note}


def _best_yaml(folder: StudyFolder, params: dict[str, Any]) -> str | None:
    from hpo.study import load_study

    try:
        spec = load_study(folder.spec_file)
    except (StudyError, OSError):
        return None
    return best_config_yaml(spec, params)
