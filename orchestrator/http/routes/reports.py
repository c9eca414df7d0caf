"""Reports over HTTP: ``/report/{dataset}/`` serves the dataset's current report.

A report is rebuilt when the dataset's results changed since it was written (its search revision or
its number of models), once at a time per process; otherwise the files on disk are served, so
``saverzoo report`` run beforehand into the same folder makes the first request fast too.
"""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from sqlalchemy import select

from cluster.validate import name_problem, relative_path_problem
from db.models import Dataset
from db.queries import NotFound, get_dataset
from orchestrator.reports.page import (
    REPORT_META,
    report_folder,
    report_state,
    write_report,
)

_building = threading.Lock()


def current_report(request: Request, dataset_name: str) -> Path:
    """The folder of the dataset's report, rebuilt first if the results changed."""
    report_dir: Path = request.app.state.report_dir
    folder = report_folder(report_dir, dataset_name)
    with request.app.state.sessions.begin() as session:
        dataset = get_dataset(session, dataset_name)
        if _is_current(folder, report_state(session, dataset)):
            return folder
    with _building, request.app.state.sessions.begin() as session:
        dataset = get_dataset(session, dataset_name)
        if not _is_current(folder, report_state(session, dataset)):  # built while we waited?
            report_dir.mkdir(parents=True, exist_ok=True)
            write_report(session, dataset_name, folder)
    return folder


def _is_current(folder: Path, state: dict) -> bool:
    try:
        meta = json.loads((folder / REPORT_META).read_text())
    except (OSError, ValueError):
        return False
    return all(meta.get(key) == value for key, value in state.items())


def checked_name(dataset: str) -> str:
    """A dataset name that can exist, else ``NotFound`` (a report is looked up, not made)."""
    problem = name_problem(dataset)
    if problem is not None:
        raise NotFound(f"no report of {dataset[:60]!r}: a dataset name {problem}")
    return dataset


def report_router() -> APIRouter:
    router = APIRouter(prefix="/report", tags=["reports"])

    @router.get("", response_class=HTMLResponse)
    @router.get("/", response_class=HTMLResponse)
    def reports(request: Request) -> str:
        """Links to the report of every dataset."""
        with request.app.state.sessions.begin() as session:
            names = session.scalars(select(Dataset.name).order_by(Dataset.name)).all()
        items = "".join(
            f'<li><a href="/report/{quote(n, safe="")}/">{html.escape(n)}</a></li>' for n in names
        )
        return f"<!doctype html><title>saverzoo reports</title><h1>Reports</h1><ul>{items}</ul>"

    @router.get("/{dataset}")
    def report_root(dataset: str) -> RedirectResponse:
        checked_name(dataset)
        return RedirectResponse(f"/report/{quote(dataset, safe='')}/")

    @router.get("/{dataset}/{file:path}")
    def report_file(request: Request, dataset: str, file: str = "") -> FileResponse:
        """A file of the dataset's current report (index.html by default).

        Only the page checks that the report is current: the plots it links to were written
        with it (a report is replaced whole), so a page of a thousand curves costs one check.
        """
        checked_name(dataset)
        problem = relative_path_problem(file) if file else None
        if problem is not None:  # a NUL byte, a 5,000-character name: no file can have it
            raise NotFound(f"no file {file[:60]!r} in the report of {dataset!r}: it {problem}")
        folder = report_folder(request.app.state.report_dir, dataset)
        if file in ("", "index.html") or not (folder / REPORT_META).exists():
            folder = current_report(request, dataset)
        folder = folder.resolve()
        path = (folder / (file or "index.html")).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise NotFound(f"no file {file!r} in the report of {dataset!r}")
        return FileResponse(path)

    return router
