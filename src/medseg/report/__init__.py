"""The HTML report: one self-contained file summarising a results folder.

``build_report(RESULTS)`` writes ``RESULTS/report.html`` (inline CSS, base64 PNG figures).
"""

from medseg.report.html import REPORT_FILE
from medseg.report.results import Results, load_results
from medseg.report.segmentation import build_report, render_report

__all__ = ["REPORT_FILE", "Results", "build_report", "load_results", "render_report"]
