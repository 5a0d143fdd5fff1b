"""What is explained in a segmentation, and at which layer (used by ``explain_segmentation``).

* :class:`RegionScore`: a segmentation network as a ``(B, 1)`` score, the label's logit
  summed over its predicted region, so the classifier tools of ``medseg.inference.explain``
  (Grad-CAM, saliency) apply.
* :func:`segmentation_cam_layer`: Grad-CAM's default layer, the feature map that feeds the
  network's output head, i.e. the last decoder stage's output at full resolution (for
  medseg's U-Nets ``decoder.stages.<n-2>`` with ``n`` encoder stages: the decoder runs deepest
  first). It is found by hooks: the head is the last convolution to run whose output has the
  logits' shape; the layer is the outermost module that returned the head's input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from medseg.errors import ConfigError


class RegionScore(nn.Module):
    """``(B, C, *spatial) -> (B, 1)``: one channel's logit summed over a region.

    Args:
        network: a segmentation network returning logits ``(B, K, *spatial)`` (or a list whose
            first item they are).
        channel: the output channel explained.
        region: ``(*spatial)`` bool mask on the network's input grid.
    """

    def __init__(self, network: nn.Module, channel: int, region: Tensor) -> None:
        super().__init__()
        self.network = network
        self.channel = int(channel)
        self.register_buffer("region", region.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.network(x)
        if isinstance(logits, (list, tuple)):
            logits = logits[0]
        spatial = tuple(range(1, logits.ndim - 1))
        return (logits[:, self.channel] * self.region).sum(dim=spatial)[:, None]


def segmentation_cam_layer(network: nn.Module, x: Tensor) -> str:
    """The dotted name of the module whose output feeds the network's output head.

    The head is the last convolution to run whose output has the logits' shape; the layer is
    the outermost module (the last to complete) that returned the head's input tensor.

    Raises:
        ConfigError: no such convolution, or its input is not any module's output (computed
            by a function inside ``forward``): pass ``layer=`` explicitly.
    """
    produced: dict[int, str] = {}
    keep: list[Tensor] = []  # D: holding the tensors keeps their ids unique during the pass
    head_inputs: list[tuple[str, int, tuple[int, ...]]] = []
    handles = []

    def after(name: str, module: nn.Module, inputs: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            produced[id(out)] = name
            keep.append(out)
        if isinstance(module, _ConvNd) and isinstance(out, Tensor):
            head_inputs.append((name, id(inputs[0]), tuple(out.shape)))

    try:
        for name, module in network.named_modules():
            if name:
                handles.append(
                    module.register_forward_hook(
                        lambda mod, inp, out, _name=name: after(_name, mod, inp, out)
                    )
                )
        with torch.no_grad():
            logits = network(x)
    finally:
        for handle in handles:
            handle.remove()
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    heads = [h for h in head_inputs if h[2] == tuple(logits.shape)]
    if not heads:
        raise ConfigError(
            f"{type(network).__name__}: no convolution returns the logits' shape "
            f"{tuple(logits.shape)}; pass layer= the module to explain"
        )
    head, input_id, _ = heads[-1]
    if input_id not in produced:
        raise ConfigError(
            f"{type(network).__name__}: the input of the output head {head!r} is not a module's "
            "output; pass layer= the module to explain"
        )
    return produced[input_id]


__all__ = ["RegionScore", "segmentation_cam_layer"]
