"""Transformer building blocks, N-dimensional (2D and 3D).

* tokens (:mod:`.tokens`): patch embedding, a position embedding interpolated when the input
  size changes, a ViT backbone without ``[CLS]`` that returns chosen layers (UNETR, TransUNet);
  attention is :class:`medseg.nets.attention.MultiHeadSelfAttention` on
  ``scaled_dot_product_attention`` in the pre-norm :class:`medseg.nets.vit.TransformerBlock`;
* shifted windows (:mod:`.window`, :mod:`.swin_block`, :mod:`.patch_merging`): window
  partition, relative position bias, the cyclic shift and its attention mask, the Swin block,
  patch merging and expanding;
* sizes (:mod:`.sizes`): the refusal of an input size that names the valid ones.
"""

from medseg.nets.transformer.patch_merging import PatchExpanding, PatchMerging
from medseg.nets.transformer.sizes import InputSizeError, check_input_size
from medseg.nets.transformer.swin_block import SwinBlock, WindowSizeError
from medseg.nets.transformer.tokens import (
    PatchEmbedding,
    TokenEncoder,
    interpolate_position_embedding,
)
from medseg.nets.transformer.window import (
    WindowAttention,
    relative_position_index,
    shift_attention_mask,
    window_partition,
    window_reverse,
)

__all__ = [
    "InputSizeError",
    "PatchEmbedding",
    "PatchExpanding",
    "PatchMerging",
    "SwinBlock",
    "TokenEncoder",
    "WindowAttention",
    "WindowSizeError",
    "check_input_size",
    "interpolate_position_embedding",
    "relative_position_index",
    "shift_attention_mask",
    "window_partition",
    "window_reverse",
]
