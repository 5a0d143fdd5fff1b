"""Working-copy operations against hand-made masks."""

from __future__ import annotations

import numpy as np

from medseg.viewer.edits import WorkingCopy, stroke_disc_mask


def test_disc_radius_is_in_mm_along_each_axis():
    # rows 2 mm apart, columns 1 mm: a 2 mm radius reaches 1 row and 2 columns
    mask = stroke_disc_mask((9, 9), [(4.0, 4.0)], 2.0, (2.0, 1.0))
    expected = np.zeros((9, 9), bool)
    expected[4, 2:7] = True
    expected[3, 4] = expected[5, 4] = True
    np.testing.assert_array_equal(mask, expected)


def test_stroke_covers_the_segment_between_points():
    mask = stroke_disc_mask((5, 20), [(2.0, 2.0), (2.0, 17.0)], 1.0, (1.0, 1.0))
    assert mask[2, 2:18].all() and mask[1, 2:18].all() and not mask[0].any()


def test_brush_on_a_sagittal_slice_lands_on_the_flipped_rows():
    wc = WorkingCopy(np.zeros((4, 5, 6), np.uint8), (1.0, 1.0, 1.0), 0)
    assert wc.paint("sagittal", 2, [(0.0, 1.0)], 0.5, 3) == 1
    assert wc.array[3, 1, 2] == 3 and wc.array.sum() == 3


def test_eraser_removes_only_the_chosen_label():
    base = np.zeros((1, 5, 5), np.uint8)
    base[0, 2, 1:4] = [1, 2, 1]
    wc = WorkingCopy(base, (1.0, 1.0, 1.0), 0)
    assert wc.paint("axial", 0, [(2.0, 2.0)], 1.5, 1, mode="eraser") == 2
    assert wc.array[0, 2].tolist() == [0, 0, 2, 0, 0]


def test_undo_redo_are_exact_and_a_new_edit_clears_redo():
    wc = WorkingCopy(np.zeros((2, 6, 6), np.uint8), (1.0, 1.0, 1.0), 0)
    wc.paint("axial", 1, [(3.0, 3.0)], 1.0, 1)
    painted = wc.array.copy()
    assert wc.undo() == 5 and not wc.array.any()
    assert wc.redo() == 5 and (wc.array == painted).all()
    wc.undo()
    wc.paint("axial", 0, [(0.0, 0.0)], 0.5, 2)
    assert not wc.can_redo and wc.changed_per_label() == {2: 1}


def test_fill_holes_fills_an_enclosed_background_cavity_only():
    base = np.zeros((5, 5, 5), np.uint8)
    base[1:4, 1:4, 1:4] = 1
    base[2, 2, 2] = 0  # enclosed
    base[0, 0, 0] = 0  # outside
    wc = WorkingCopy(base, (1.0, 1.0, 1.0), 0)
    assert wc.fill_holes(1) == 1 and wc.array[2, 2, 2] == 1 and wc.array[0, 0, 0] == 0


def test_keep_largest_removes_smaller_components():
    base = np.zeros((1, 6, 6), np.uint8)
    base[0, 0, 0:3] = 1  # 3 voxels
    base[0, 4:6, 4:6] = 1  # 4 voxels: kept
    base[0, 3, 0] = 2  # another label untouched
    wc = WorkingCopy(base, (1.0, 1.0, 1.0), 0)
    assert wc.keep_largest(1) == 3
    assert wc.array[0, 0].sum() == 0 and wc.array[0, 4:6, 4:6].all() and wc.array[0, 3, 0] == 2
