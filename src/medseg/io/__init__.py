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
from medseg.io.limits import MAX_IMAGE_GB, MAX_SPACING_MM
from medseg.io.slide import Slide, SlideLevel, open_slide
from medseg.io.slide_writer import write_pyramidal_tiff
from medseg.io.time_axis import read_time_series, stack_frames

__all__ = [
    "Slide",
    "SlideLevel",
    "open_slide",
    "read_time_series",
    "stack_frames",
    "write_pyramidal_tiff",
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_GB",
    "MAX_SPACING_MM",
    "Image",
    "file_ending",
    "grid_mismatches",
    "read_geometry",
    "read_image",
    "to_sitk",
    "write_image",
]
