"""Classical segmentation (needs only io and data): thresholds and Otsu, region growing, graph
cuts, level sets, atlas registration with multi-atlas label fusion, and a random-forest voxel
classifier. Every method takes an ``Image`` and returns a label-map ``Image`` on its grid; the
registry ``CLASSIC`` lists them by name (``medseg classic METHOD``). See docs/classic.md.

Optional dependencies, imported where used: PyMaxflow, scikit-image and scikit-learn (extra
``classic``), nilearn for the MNI152 templates (extra ``atlas``).
"""

from medseg.classic.atlas import fuse_labels, mni152, multi_atlas
from medseg.classic.cluster import gmm, kmeans
from medseg.classic.forest import RandomForestSegmenter
from medseg.classic.graph_cut import graph_cut
from medseg.classic.level_set import level_set
from medseg.classic.region import region_grow
from medseg.classic.registration import Registration, propagate, register
from medseg.classic.registry import CLASSIC
from medseg.classic.threshold import otsu, otsu_segmentation, otsu_threshold, threshold

__all__ = [
    "gmm",
    "kmeans",
    "CLASSIC",
    "RandomForestSegmenter",
    "Registration",
    "fuse_labels",
    "graph_cut",
    "level_set",
    "mni152",
    "multi_atlas",
    "otsu",
    "otsu_segmentation",
    "otsu_threshold",
    "propagate",
    "region_grow",
    "register",
    "threshold",
]
