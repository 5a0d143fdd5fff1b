"""The report's best, median and worst case: contour overlays of reference and prediction.

Cases are ranked by their mean Dice over labels (``results.rank_cases``); each pick is drawn
from the prediction, the reference and (when the dataset folder is found) the image. A case
whose files are missing or unreadable gets a note instead of a figure.
"""

from __future__ import annotations

from medseg.errors import MedsegError
from medseg.io import read_image
from medseg.report import figures
from medseg.report.html import escape, note
from medseg.report.results import Evaluation, Results, case_paths, pick_cases, rank_cases


def case_overlays(results: Results) -> str:
    """One overlay figure per pick (best, median, worst) of every evaluation, as HTML."""
    parts = []
    for evaluation in results.evaluations:
        picks = pick_cases(rank_cases(evaluation.rows))
        if not picks:
            why = (
                "No case has a finite Dice to rank by."
                if evaluation.rows
                else f"No per_case.csv in {evaluation.path}."
            )
            parts.append(f"<h3>{escape(evaluation.name)}</h3>" + note(why))
            continue
        figs = "".join(
            _case_figure(results, evaluation, roles, case, dice) for roles, case, dice in picks
        )
        parts.append(f'<h3>{escape(evaluation.name)}</h3><div class="figures">{figs}</div>')
    legend = (
        "Cases ranked by their mean Dice over labels. Yellow: reference contour; blue: prediction "
        "contour; 3D cases show the axial slice with the most reference foreground."
    )
    return f"<p>{escape(legend)}</p>" + "".join(parts)


def _case_figure(
    results: Results, evaluation: Evaluation, roles: str, case: str, dice: float
) -> str:
    per_label = ", ".join(
        f"{results.label_name(r['label'])}: {float(r['dice']):.3f}"
        for r in evaluation.rows
        if r["case"] == case
    )
    caption = f"{roles}: {case}, mean Dice {dice:.3f} ({per_label})"
    paths = case_paths(results, evaluation, case)
    missing = [k for k in ("reference", "prediction") if paths[k] is None]
    if missing:
        why = note(f"no overlay: {' and '.join(missing)} not found")
        return f"<figure><figcaption>{escape(caption)}</figcaption>{why}</figure>"
    notes = []
    try:
        reference, prediction = read_image(paths["reference"]), read_image(paths["prediction"])
        image = None
        if paths["image"] is None:
            notes.append("image not found in the dataset folder; contours drawn on black")
        else:
            image = read_image(paths["image"])
        figure, more = figures.case_overlay(
            reference,
            prediction,
            evaluation.regions,
            image=image,
            title=f"{roles}: {case}  (Dice {dice:.3f})",
        )
    except (MedsegError, ValueError) as err:
        return (
            f"<figure><figcaption>{escape(caption)}</figcaption>"
            f"{note(f'no overlay: {err}')}</figure>"
        )
    extra = "".join(note(n) for n in notes + more)
    return (
        f'<figure><img src="{figures.to_data_uri(figure)}" alt="{escape(case)}">'
        f"<figcaption>{escape(caption)}</figcaption>{extra}</figure>"
    )
