"""A fixed-seed random initialisation that behaves like a trained model, for tests.

Model-zoo weights cannot be downloaded everywhere; tests and benchmarks need a model whose
numbers look like a trained one's all the same (see :func:`build_random_model`).
"""

from __future__ import annotations

import logging

import torch

from export_tools.detector_config import score_thresh, set_score_thresh
from export_tools.trace.tracing import model_input, raw_outputs, synthetic_sample_image

LOGGER = logging.getLogger("export_tools.random_init")

# Spread of mask logits of the random model (see build_random_model).
RANDOM_MASK_LOGIT_STD = 4.0


def build_random_model(config, seed: int):
    """Detectron2's own initialisation under ``seed``, made to behave like a trained model.

    Two adjustments, both measured on a fixed synthetic image, so the result is
    deterministic for a given seed:

    * BatchNorm statistics (frozen, or the SyncBN of the LSJ baselines, which is plain
      BatchNorm in eval mode) are set from the activations each layer sees in one pass over
      the whole model (what trained statistics do).  Detectron2 initialises them to mean 0 /
      variance 1, i.e. no normalisation; through a 50-layer random ResNet activations then
      reach ~1e9, every score saturates at exactly 1.0 and keypoint decoding meets
      non-finite values.
    * The mask predictor is scaled so mask logits have a standard deviation of
      ``RANDOM_MASK_LOGIT_STD``.  Detectron2 initialises it with std 0.001, which leaves every
      mask probability at 0.5 +- 0.01: each pixel a coin toss at the 0.5 threshold, unlike
      the confident masks of a trained model.
    """
    from detectron2.layers import FrozenBatchNorm2d

    torch.manual_seed(seed)
    model = config.build_model()
    image = model_input(config, synthetic_sample_image())

    def set_statistics(module, inputs):
        activations = inputs[0]
        if activations.shape[0] * activations.shape[2] * activations.shape[3] > 1:
            module.running_mean.copy_(activations.mean(dim=(0, 2, 3)))
            module.running_var.copy_(activations.var(dim=(0, 2, 3)))

    norm_types = (FrozenBatchNorm2d, torch.nn.modules.batchnorm._BatchNorm)
    norms = [module for module in model.modules() if isinstance(module, norm_types)]
    hooks = [module.register_forward_pre_hook(set_statistics) for module in norms]
    threshold = score_thresh(model)
    set_score_thresh(model, 0.0)  # so that heads with norms (LSJ's mask head) see instances
    with torch.no_grad():
        raw_outputs(model, image)
    set_score_thresh(model, threshold)
    for hook in hooks:
        hook.remove()

    mask_predictor = getattr(getattr(model, "roi_heads", None), "mask_head", None)
    if mask_predictor is not None:
        mask_predictor = mask_predictor.predictor
        logits = []
        hook = mask_predictor.register_forward_hook(lambda _m, _i, out: logits.append(out))
        with torch.no_grad():
            raw_outputs(model, image)
        hook.remove()
        if logits and logits[0].numel() > 1:
            with torch.no_grad():
                mask_predictor.weight.mul_(RANDOM_MASK_LOGIT_STD / logits[0].std())
    return model


def announce_random_weights(seed: int, reason: str) -> None:
    """Warn, loudly, that the exported detections will be meaningless."""
    banner = "!" * 78
    LOGGER.warning(
        "\n%s\n!! EXPORTING RANDOMLY INITIALISED WEIGHTS (seed %d): %s\n"
        "!! Detections from this model are meaningless; use it for tests only.\n%s",
        banner,
        seed,
        reason,
        banner,
    )
