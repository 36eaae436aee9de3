"""The gateway's HTTP interface: response models and OpenAPI fragments.

The pydantic models are the OpenAPI schema that clients (and the Schemathesis test)
validate against.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from d2_triton.carried import CARRIED
from d2_triton.names import JSON_MASK_FORMATS, Precision
from d2_triton.vision.imaging import ACCEPTED, SIGNATURES

UPLOAD_FIELD = "image"
# The media types of the formats preprocess decodes (``vision.imaging.SIGNATURES``).
IMAGE_MEDIA_TYPES = tuple(f"image/{name}" for name in SIGNATURES)
# The header that carries the API key, when the gateway has one (API_KEY).
API_KEY_HEADER = "X-API-Key"
# ``mask_format`` of the JSON endpoint: COCO RLE, polygons, or none.
JsonMaskFormat = Literal[JSON_MASK_FORMATS]  # type: ignore[valid-type]


class ErrorResponse(BaseModel):
    """Every error: what went wrong, in words."""

    detail: str


class ImageSize(BaseModel):
    """The original image's size, in pixels."""

    height: int
    width: int


class Mask(BaseModel):
    """COCO RLE (``counts``, decodable with ``pycocotools.mask.decode``) or polygons."""

    size: list[int] = Field(description="[height, width] of the original image")
    counts: str | None = Field(None, description="COCO compressed RLE (mask_format=rle)")
    polygons: list[list[float]] | None = Field(
        None, description="outer contours, each [x1, y1, x2, y2, ...] (mask_format=polygon)"
    )


class InstanceFields(BaseModel):
    """What every detected instance has: its box, score and class, and its mask if any."""

    box: list[float] = Field(description="x1, y1, x2, y2 in original-image pixels")
    score: float
    class_id: int
    label: str
    mask: Mask | None = None


def _nested_floats(rank: int) -> Any:
    """``list[list[...[float]]]``, ``rank`` lists deep: one instance's carried value."""
    value: Any = float
    for _ in range(rank):
        value = list[value]
    return value


# One detected instance: the fields above and each carried output (``d2_triton.carried``:
# keypoints ...) its model has.
Detection = create_model(
    "Detection",
    __base__=InstanceFields,
    __doc__="One detected instance.",
    **{
        kind.name: (_nested_floats(kind.rank) | None, Field(None, description=kind.description))
        for kind in CARRIED
    },
)


class Segment(BaseModel):
    """One segment of a semantic or panoptic model's answer: a thing or a stuff region."""

    id: int = Field(description="its id, from 1, in the order Detectron2 places segments")
    class_id: int = Field(description="a thing class (is_thing) or a stuff class")
    label: str
    is_thing: bool
    score: float | None = Field(None, description="the instance's score (things only)")
    area: int = Field(description="its pixels")
    mask: Mask | None = None


class DetectionResponse(BaseModel):
    """``POST /v1/detect``'s answer."""

    model: str = Field(description="the pipeline that answered")
    image_size: ImageSize
    detections: list[Detection]
    segments: list[Segment] | None = Field(
        None,
        description="a semantic or panoptic model's segments (Detectron2's panoptic or "
        "semantic answer for the whole image: the request's score_threshold, classes and "
        "max_detections select detections only)",
    )


class TritonState(BaseModel):
    """Where Triton is and whether it and the default pipeline's ensemble are ready."""

    url: str
    protocol: str
    ensemble: str = Field(description="the default pipeline's Triton ensemble")
    live: bool
    ready: bool
    ensemble_ready: bool
    # "Model" means a pipeline in this interface (?model=); these two named the ensemble.
    model: str = Field(deprecated="use `ensemble`; removed in 0.3")
    model_ready: bool = Field(deprecated="use `ensemble_ready`; removed in 0.3")


class PipelineHealth(BaseModel):
    """A pipeline's health as the model server's launcher sees its processes."""

    name: str
    state: Literal["ready", "reloading", "broken"] = Field(
        description="reloading: one of its models is being loaded again after its process "
        "died; broken: one is dead and not (yet) being reloaded"
    )
    model: str | None = Field(None, description="the Triton model that keeps it from ready")
    detail: str = Field("", description="why, in words")
    since: float = Field(description="when it entered this state (Unix time)")
    last_ready: float = Field(description="when it was last fully ready (Unix time)")


class HealthResponse(BaseModel):
    """``GET /health``'s answer."""

    status: Literal["ok", "unavailable"]
    gateway: Literal["ok"]
    triton: TritonState
    pipelines: list[PipelineHealth] = Field(
        default_factory=list,
        description="each pipeline's health (empty where the model server does not tell: "
        "over gRPC, or a Triton without the project's launcher)",
    )


class TritonModelEntry(BaseModel):
    """One entry of Triton's repository index: a Triton model (a pipeline has four)."""

    name: str
    version: str | None = None
    state: str | None = None
    reason: str | None = None


class PipelineEntry(BaseModel):
    """One pipeline (``export --name``): what ``/v1/detect?model=NAME`` calls."""

    name: str
    ensemble: str = Field(description="its Triton ensemble model")
    version: str | None = None
    state: str | None = None
    precision: Precision = Field(
        description="the detector's exported arithmetic (``export --precision``; see the export "
        "docs)"
    )
    weights: Literal["checkpoint", "random"] = Field(
        "checkpoint",
        description="random: exported from a fixed-seed random initialisation (the weights "
        "could not be had and the export was allowed to fall back): its detections mean "
        "nothing",
    )
    classes: dict[str, str] = Field(description="class id -> label, as detections name them")
    health: PipelineHealth | None = None


class ModelsResponse(BaseModel):
    """``GET /v1/models``'s answer."""

    triton: str
    default_model: str = Field(description="the pipeline a request without ?model= gets")
    models: list[PipelineEntry]
    triton_index: list[TritonModelEntry] = Field(
        description="Triton's repository index: every Triton model (a pipeline's ensemble, "
        "preprocess, detector and postprocess) with its state"
    )
    triton_models: list[TritonModelEntry] = Field(
        deprecated="use `triton_index` (the same entries); removed in 0.3"
    )


IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": f"The image file ({ACCEPTED}): as a multipart upload in the field "
        f"`{UPLOAD_FIELD}`, or as the raw request body.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}},
                    "required": [UPLOAD_FIELD],
                }
            },
            **{
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in (*IMAGE_MEDIA_TYPES, "application/octet-stream")
            },
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "not an acceptable image, or a bad option"},
    404: {"model": ErrorResponse, "description": "no model (pipeline) of that name"},
    413: {"model": ErrorResponse, "description": "the upload is over the size limit"},
    502: {"model": ErrorResponse, "description": "Triton is unreachable or failed"},
    503: {
        "model": ErrorResponse,
        "description": "the model has as many requests in flight as it admits; retry after "
        "the seconds in the Retry-After header",
    },
    504: {"model": ErrorResponse, "description": "Triton did not answer in time"},
}
UNAUTHORIZED: dict[str, Any] = {
    "model": ErrorResponse,
    "description": f"no API key, or a wrong one, in the {API_KEY_HEADER} header",
}
