"""Image I/O with geometry. See ``medseg.io.image`` for the axis order used everywhere."""

from medseg.io.formats import (
    IMAGE_EXTENSIONS,
    file_ending,
    read_geometry,
    read_image,
    to_sitk,
    write_image,
)
from medseg.io.image import Image, grid_mismatches

__all__ = [
    "IMAGE_EXTENSIONS",
    "Image",
    "file_ending",
    "grid_mismatches",
    "read_geometry",
    "read_image",
    "to_sitk",
    "write_image",
]
