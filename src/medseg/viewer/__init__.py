"""Clinician-in-the-loop viewer: browse cases, compare prediction and reference, correct
masks in the browser, save versioned corrections with an audit trail, export them for
retraining (``medseg view``; extra ``viewer``: FastAPI + uvicorn). See docs/viewer.md.

Modules: ``cases`` (which cases), ``volumes`` (memory-mapped volumes, slices, PNGs, cache),
``edits`` (working copy, brush/eraser, undo), ``storage`` (versioned atomic saves),
``audit`` (hash-chained log), ``security`` (token, hosts, limits), ``session`` and
``review`` (the server's state and actions), ``app`` (FastAPI), ``export`` (MSD dataset).
FastAPI is imported only by ``medseg.viewer.app``.
"""

from medseg.viewer.audit import AuditCheck, AuditLog, verify_audit
from medseg.viewer.cases import CaseEntry, Catalog, ViewerError, discover_cases
from medseg.viewer.edits import WorkingCopy, stroke_disc_mask
from medseg.viewer.export import export_reviewed
from medseg.viewer.storage import StaleVersionError, save_version, versions

__all__ = [
    "AuditCheck",
    "AuditLog",
    "CaseEntry",
    "Catalog",
    "StaleVersionError",
    "ViewerError",
    "WorkingCopy",
    "discover_cases",
    "export_reviewed",
    "save_version",
    "stroke_disc_mask",
    "verify_audit",
    "versions",
]
