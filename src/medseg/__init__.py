"""medseg: deep learning for medical image segmentation.

Layers (imports point down only): io -> data -> transforms -> {nets, losses, metrics}
-> planning -> training -> inference -> evaluation/report -> cli. ``classic`` needs only
io and data. See ARCHITECTURE in the docs.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
