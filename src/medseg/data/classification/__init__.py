"""Image classification / regression datasets: one label (or target vector) per image.

``load_classification(source, split)`` reads three kinds of source into a ``ClassificationSet``
(all images stacked in memory as ``(N, C, *spatial)`` float32):

* **a folder of images per class**::

      SOURCE/train/<class>/<image>     SOURCE/val/<class>/...     SOURCE/test/<class>/...

  or, when SOURCE has none of the ``train``/``val``/``test`` subfolders, ``SOURCE/<class>/<image>``
  (all split ``"train"``). Images are any file ``medseg.io`` reads (``.png``, ``.nii.gz``, ...);
  a subfolder of a class folder is read as one DICOM series. Other files are skipped with a
  warning, hidden entries (``.name``) silently. Class names are the folder names over *all*
  splits, sorted as strings, so a class index is the same in every split (a class may be
  missing from a split, but a class folder may not be empty).
* **a CSV file** with a header row ``path,label[,fold][,split]`` (classification) or
  ``path,label,target_x,...`` (regression), paths relative to the CSV's folder: see
  :mod:`medseg.data.classification.csv_table` for labels, folds, splits and targets.
* **a ``.npz`` in MedMNIST layout**: ``<split>_images`` ``(N, H, W)``, ``(N, H, W, C)``
  (C in 1, 3, 4) or ``(N, D, H, W)`` (``(N, D, H, W, C)``) and ``<split>_labels`` ``(N, 1)``
  or ``(N,)`` integers; an optional ``class_names`` string array, else ``"0", "1", ...``.
  Ids are ``npz:<split>:<index>``.

Intensities (``normalize``):

* ``"auto"`` (default): ``uint8`` images (PNG/JPEG, MedMNIST) are divided by 255 to ``[0, 1]``;
  every other dtype (CT in HU, MRI floats, 16-bit pictures) is kept as read, as float32.
* ``None``: every image kept as read (uint8 stays 0-255), as float32.
* ``"zscore"``: each image and channel shifted and scaled to mean 0, standard deviation 1.

Every problem in the input is a ``DatasetError`` whose one-line message names the file (and
row, key or shape) at fault: mixed image sizes or channel counts, empty class folders, bad or
missing CSV columns and values, missing images, missing ``.npz`` keys, unknown splits, and
NaN / infinite voxels.

The helpers ``class_weights``, ``balanced_sample_weights`` and ``stratified_folds`` work on
the integer labels and return NumPy arrays (the data layer does not need torch for them).

Modules, one concept each (import from this package, not from them):

* ``dataset``: ``ClassificationSet``, ``Task``, ``Normalize``, ``SPLITS``.
* ``load``: ``load_classification`` and ``available_splits``, which pick the reader.
* ``folders``, ``csv_table``, ``npz``: one reader per source kind.
* ``images``: image files -> one float32 stack, voxel checks, ``"zscore"``.
* ``balance``: ``class_weights``, ``balanced_sample_weights``, ``stratified_folds``.
"""

from medseg.data.classification.balance import (
    balanced_sample_weights,
    class_weights,
    stratified_folds,
)
from medseg.data.classification.dataset import (
    NORMALIZE_MODES,
    SPLITS,
    ClassificationSet,
    Normalize,
    Task,
)
from medseg.data.classification.load import available_splits, load_classification

__all__ = [
    "NORMALIZE_MODES",
    "SPLITS",
    "ClassificationSet",
    "Normalize",
    "Task",
    "available_splits",
    "balanced_sample_weights",
    "class_weights",
    "load_classification",
    "stratified_folds",
]
