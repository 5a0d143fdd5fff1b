"""The case store holds class indices 0..K-1 (index k = the k-th smallest declared value), and
predictions map the indices back to the declared values without wrapping any of them."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data.preprocess import class_values, labels_to_indices
from medseg.errors import DatasetError
from medseg.inference import probabilities_to_label
from medseg.planning.preprocessing import preprocess_arrays

from ..inference.conftest import make_plan


def test_class_values_are_the_sorted_integer_labels_without_regions() -> None:
    labels = {"background": 0, "tumour": 10, "organ": 1, "both": [1, 10]}
    assert class_values(labels) == [0, 1, 10]


@pytest.mark.parametrize("values", [[0, 1, 2, 10], [0, 40000, 65536], [0, 2**40]])
def test_label_values_become_contiguous_indices(values: list[int]) -> None:
    label = np.array(values[::-1] * 2, dtype=np.int64)
    indices = labels_to_indices(label, values)
    assert indices.dtype == np.int8
    np.testing.assert_array_equal(np.asarray(values)[indices], label)


def test_contiguous_labels_keep_their_values() -> None:
    label = np.array([[0, 1], [2, 1]], np.uint8)
    np.testing.assert_array_equal(labels_to_indices(label, [0, 1, 2]), label)


def test_a_value_outside_the_planned_labels_is_refused_by_name() -> None:
    with pytest.raises(
        DatasetError, match=r"label values \[7\] are not among the planned labels \[0, 1, 2\]"
    ):
        labels_to_indices(np.array([0, 7, 1]), [0, 1, 2])


def test_preprocessing_stores_65536_as_its_class_index_not_as_a_wrapped_int16() -> None:
    plan = make_plan(
        spatial_dims=2,
        spacing=(1.0, 1.0),
        patch_size=(8, 8),
        labels={"background": 0, "big": 40000, "huge": 65536},
    )
    label = np.zeros((8, 8), np.uint32)
    label[1:4, 1:4], label[5:7, 5:7] = 65536, 40000
    image = np.ones((1, 8, 8), np.float32)
    _, stored, _ = preprocess_arrays(image, label, (1.0, 1.0), plan)
    assert stored.dtype == np.int8
    assert (stored == 2).sum() == 9 and (stored == 1).sum() == 4 and (stored == 0).sum() == 51


def test_probabilities_map_back_to_large_label_values_in_a_type_that_holds_them() -> None:
    probs = np.eye(3)[:, :, None]  # voxel k has class k
    label = probabilities_to_label(probs, [0, 40000, 65536])
    assert label.dtype == np.uint32 and label.ravel().tolist() == [0, 40000, 65536]
    assert probabilities_to_label(probs, [0, 1, 2]).dtype == np.uint8
