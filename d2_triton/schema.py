"""Names shared by the exporter, the Triton models and the clients.

Keeping them in one place is what lets the exporter generate configs that the models and
the clients agree with, and lets a test check that they do.
"""

ENSEMBLE_MODEL = "ensemble"
PREPROCESS_MODEL = "preprocess"
DETECTOR_MODEL = "detector"
POSTPROCESS_MODEL = "postprocess"

# The ensemble's single input: the raw bytes of one encoded image.
IMAGE_BYTES = "image_bytes"

# Between the steps: preprocess's outputs (the detector's input and the two sizes that
# postprocess needs) and the detector's mask probabilities.
IMAGE = "image"
ORIGINAL_SIZE = "original_size"
RESIZED_SIZE = "resized_size"
MASK_PROBS = "mask_probs"

# Detectron2 ``Instances`` fields in the TorchScript model's outputs -> detector tensor names.
DETECTOR_OUTPUTS = {
    "pred_boxes": "boxes",
    "scores": "scores",
    "pred_classes": "classes",
    "pred_masks": MASK_PROBS,
    "pred_keypoints": "keypoints",
}

# Outputs of `postprocess`, which are also the ensemble's outputs.
BOXES = "boxes"
SCORES = "scores"
CLASSES = "classes"
LABELS = "labels"
MASKS_RLE = "masks_rle"
MASKS = "masks"
KEYPOINTS = "keypoints"
IMAGE_SIZE = "image_size"

# Default ports: Triton's own defaults (HTTP, gRPC, metrics) and the REST gateway's.
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
GATEWAY_PORT = 8080
