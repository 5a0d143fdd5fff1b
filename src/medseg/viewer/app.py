"""The viewer's FastAPI application: the page, the JSON API and the security middleware.

Routes (every one needs the token, ``medseg.viewer.security``)::

    GET  /                                  the page (a first visit with ?token= sets the cookie)
    GET  /static/{viewer.js|viewer.css}     the page's script and style (nothing else is served)
    GET  /api/session                       user, read-only, labels, prompt model present
    GET  /api/cases?sort=id|dice|hd95|status
    GET  /api/cases/{id}/meta
    GET  /api/cases/{id}/slice?plane=&index=&layer=&window=&center=&width=   (PNG)
    POST /api/cases/{id}/edit | save | accept | prompt                        (JSON body)

Refusals answer ``{"detail": message}`` with the status of the ``ViewerError``; messages never
echo a path or a case id from the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from medseg.viewer import review
from medseg.viewer.cases import ViewerError, discover_cases
from medseg.viewer.security import (
    MAX_BODY_BYTES,
    SECURITY_HEADERS,
    TOKEN_COOKIE,
    TOKEN_HEADER,
    FailureCounter,
    failure_delay,
    host_allowed,
    new_token,
    token_matches,
)
from medseg.viewer.session import ViewerSession

STATIC_FILES = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
ACTIONS = {
    "edit": review.edit,
    "save": review.save,
    "accept": review.accept,
    "prompt": review.prompt,
}


def _static(name: str) -> str:
    return resources.files("medseg.viewer").joinpath("static", name).read_text(encoding="utf-8")


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=SECURITY_HEADERS)


def create_app(
    root: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    user: str | None = None,
    read_only: bool = False,
    token: str | None = None,
    predictions: str | os.PathLike[str] | None = None,
    prompt_model: tuple | None = None,
    extra_hosts: frozenset[str] = frozenset(),
    sleep=asyncio.sleep,
) -> FastAPI:
    """The viewer app for a results or dataset folder.

    Args:
        root: results folder (``plans.json``) or dataset folder.
        output: where corrections and ``audit.jsonl`` go (default: the results folder; a
            dataset folder without ``output`` is read-only).
        user: the name in the audit log (default: the login name).
        read_only: refuse edits, saves and accepts.
        token: the access token (default: a new random one, ``app.state.token``).
        predictions: a folder of predictions instead of the results folder's own.
        prompt_model: ``(model, PromptConfig)`` enabling ``POST .../prompt``.
        extra_hosts: ``Host`` names accepted besides loopback (``--allow-remote``).
        sleep: awaited with the slow-down delay after repeated token failures.

    Raises:
        DatasetError, ConfigError: as ``medseg.viewer.cases.discover_cases``.
    """
    catalog = discover_cases(root, output=output, predictions=predictions)
    session = ViewerSession(
        catalog, user=user or _login(), read_only=read_only, prompt=prompt_model
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        session.close()

    app = FastAPI(
        title="medseg viewer", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.session = session
    app.state.token = token or new_token()
    app.state.failures = FailureCounter()
    _add_middleware(app, extra_hosts, sleep)
    _add_page_routes(app)
    _add_api_routes(app, session)
    return app


def _login() -> str:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER", "unknown")


def _add_middleware(app: FastAPI, extra_hosts: frozenset[str], sleep) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next):
        if not host_allowed(request.headers.get("host"), extra_hosts):
            return _refuse(400, "refused: the Host header must be 127.0.0.1 or localhost")
        length = request.headers.get("content-length")
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and (
            length is None or not length.isdigit() or int(length) > MAX_BODY_BYTES
        ):
            return _refuse(413, f"request body missing a length or over {MAX_BODY_BYTES} bytes")
        expected = app.state.token
        header = request.headers.get(TOKEN_HEADER)
        given = header or request.cookies.get(TOKEN_COOKIE) or request.query_params.get("token")
        state_changing = request.method not in ("GET", "HEAD")
        if state_changing and not token_matches(header, expected):
            given = header  # a cookie alone never authorises a change
        if not token_matches(given, expected):
            client = request.client.host if request.client else "?"
            delay = failure_delay(app.state.failures.record(client))
            if delay:
                await sleep(delay)
            status = 401 if not given else 403
            return _refuse(status, "missing or wrong token: open the URL medseg view printed")
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response


def _add_page_routes(app: FastAPI) -> None:
    @app.get("/")
    def page(request: Request) -> Response:
        if "token" in request.query_params:  # first visit: keep the token in a cookie
            response: Response = RedirectResponse("/", status_code=303)
        else:
            html = _static("index.html").replace("{{TOKEN}}", app.state.token)
            response = Response(html, media_type="text/html; charset=utf-8")
        response.set_cookie(
            TOKEN_COOKIE, app.state.token, httponly=True, samesite="strict", path="/"
        )
        return response

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            return _refuse(404, "not found")
        return Response(_static(name), media_type=STATIC_FILES[name])


def _add_api_routes(app: FastAPI, session: ViewerSession) -> None:
    @app.exception_handler(ViewerError)
    async def viewer_error(request: Request, err: ViewerError) -> JSONResponse:
        return _refuse(err.status, str(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer repeats the value; name only the parameter
        names = sorted({str(e.get("loc", ("?",))[-1]) for e in err.errors()})
        return _refuse(400, f"invalid value for {', '.join(names)}")

    @app.get("/api/session")
    def session_info() -> dict:
        return {
            "user": session.user,
            "read_only": session.read_only,
            "kind": session.catalog.kind,
            "labels": session.catalog.labels,
            "prompt": session.prompt is not None,
        }

    @app.get("/api/cases")
    def cases(sort: str = "id") -> dict:
        return {"cases": session.list_cases(sort)}

    @app.get("/api/cases/{case_id}/meta")
    def meta(case_id: str) -> dict:
        return session.meta(case_id)

    @app.get("/api/cases/{case_id}/slice")
    def slice_png(
        case_id: str,
        plane: str = "axial",
        index: int = 0,
        layer: str = "image",
        window: str | None = None,
        center: float | None = None,
        width: float | None = None,
    ) -> Response:
        data = session.slice_png(
            case_id, plane, index, layer, window=window, center=center, width=width
        )
        return Response(data, media_type="image/png")

    @app.post("/api/cases/{case_id}/{action}")
    async def act(case_id: str, action: str, request: Request) -> dict:
        if action not in ACTIONS:
            raise ViewerError(404, "unknown action")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise ViewerError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise ViewerError(400, "the body must be a JSON object")
        return await asyncio.to_thread(ACTIONS[action], session, case_id, body)


def static_dir() -> Path:
    """The folder of the page's files (package data)."""
    return Path(str(resources.files("medseg.viewer").joinpath("static")))
