"""Promptable segmentation (SAM/MedSAM-style), 2D and 3D.

* the model: :class:`PromptableModel` (any image encoder, :class:`PromptEncoder`,
  :class:`MaskDecoder` on a :class:`TwoWayTransformer`); ``embed`` once per image, then
  ``predict`` from points, boxes and mask prompts, ``refine`` click by click;
  :func:`build_promptable` (small models a CPU trains), :func:`unet_image_encoder` (a trained
  medseg U-Net's encoder as the image encoder);
* official weights: :func:`load_sam` (ViT-B/L/H) and :func:`load_medsam` map the released
  state dicts onto these modules, with SAM's and MedSAM's preprocessing;
* :func:`segment_everything` (point grid, IoU and stability filters, box NMS),
  :func:`segment_volume_from_box` (MedSAM's slice-by-slice 3D inference),
  :func:`evaluate_clicks` (Dice per simulated click, NoC@85/90);
* fine-tuning as MedSAM on the shared engine: :func:`finetune_prompt`.

Prompt coordinates are voxel indices in array axis order (2D ``(row, col)``, 3D
``(z, y, x)``); a box is ``(lo_0, ..., lo_{D-1}, hi_0, ..., hi_{D-1})``, both corners inside.
"""

from medseg.prompt.clicks import ClickCurve, evaluate_clicks, next_click, simulate_clicks
from medseg.prompt.everything import InstanceMask, instance_label_map, segment_everything
from medseg.prompt.finetune import finetune_prompt
from medseg.prompt.finetune_config import PromptConfig
from medseg.prompt.finetune_model import load_prompt_run
from medseg.prompt.mask_decoder import MaskDecoder
from medseg.prompt.model import (
    Click,
    PromptableModel,
    PromptResult,
    RefineState,
    build_promptable,
    promptable_from_encoder,
)
from medseg.prompt.neck import unet_image_encoder
from medseg.prompt.prompt_encoder import PromptEncoder
from medseg.prompt.sam import load_medsam, load_sam, medsam_preprocess, sam_preprocess
from medseg.prompt.transformer import TwoWayTransformer
from medseg.prompt.volume import segment_volume_from_box

__all__ = [
    "Click",
    "ClickCurve",
    "InstanceMask",
    "MaskDecoder",
    "PromptConfig",
    "PromptEncoder",
    "PromptResult",
    "PromptableModel",
    "RefineState",
    "TwoWayTransformer",
    "build_promptable",
    "evaluate_clicks",
    "finetune_prompt",
    "instance_label_map",
    "load_medsam",
    "load_prompt_run",
    "load_sam",
    "medsam_preprocess",
    "next_click",
    "promptable_from_encoder",
    "sam_preprocess",
    "segment_everything",
    "segment_volume_from_box",
    "simulate_clicks",
    "unet_image_encoder",
]
