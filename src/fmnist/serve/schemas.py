"""The API's request and response schemas (pydantic) and the OpenAPI descriptions of what FastAPI
cannot infer: the multipart upload body, which the app parses by hand, and the PNG answers.

Request schemas are strict: a boolean, a string or a float where an integer belongs is a 422, as
the OpenAPI ``integer`` type says, rather than being converted."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fmnist import CLASS_NAMES
from fmnist.cli.inference import DEFAULT_SCALE, MAX_SCALE  # the CLI's, so both draw the same grid
from fmnist.runtime.images import INVERT_CHOICES
from fmnist.runtime.sampling import DEFAULT_SAMPLER, SAMPLERS

ImageFormat = Literal["png", "list", "png_base64"]


class ClassifyResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    filename: str | None
    label: int = Field(description="Class index 0..9.")
    class_: str = Field(alias="class", description="Class name.")
    probability: float = Field(description="Probability of `label`.")
    probabilities: list[float] = Field(description="All 10 class probabilities, by index.")
    no_garment: bool = Field(
        description="True when the image holds no garment (blank, or one flat colour): its class is then a guess."
    )


class ClassifyResponse(BaseModel):
    results: list[ClassifyResult]


class EncodeResult(BaseModel):
    filename: str | None
    latent: list[float]


class EncodeResponse(BaseModel):
    latent_dim: int
    results: list[EncodeResult]


class ImagesResponse(BaseModel):
    results: list[dict[str, Any]] = Field(
        description="Per image: `filename` (uploads only) and `image` ([28][28] floats, format "
        "`list`) or `png` (base64, format `png_base64`)."
    )


class ErrorResponse(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in [
        (400, "Unusable input (e.g. not an image, truncated image)."),
        (413, "Request body over the size limit."),
        (415, "Wrong content type."),
        (422, "Request failed validation (missing field, value out of range, unknown sampler)."),
    ]
}


def upload_body(max_files: int) -> dict[str, Any]:
    """The OpenAPI request of the upload routes, which the app parses by hand (the body, and
    `invert` too, to keep FastAPI's parameter machinery off the hot path): 1 to ``max_files``
    images in the field ``file``; ``invert`` as a query parameter or a form field, the form field
    first when both are sent (each must be auto, yes or no when present)."""
    invert = {"type": "string", "enum": list(INVERT_CHOICES)}
    return {
        "parameters": [
            {
                "name": "invert",
                "in": "query",
                "required": False,
                "schema": {**invert, "default": "auto"},
                "description": "Invert the image: auto decides from the border (as the CLI does). "
                "The form field of the same name, when sent, takes precedence.",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "minItems": 1,
                                "maxItems": max_files,
                                "description": "One or more images (any format Pillow reads); "
                                "repeat the field for several.",
                            },
                            "invert": {
                                **invert,
                                "description": "Takes precedence over the query parameter of the same name.",
                            },
                        },
                    }
                }
            },
        },
    }


PNG_RESPONSE = {200: {"content": {"image/png": {}}, "description": "JSON, or a PNG grid."}}


def generate_request(max_generate: int) -> type[BaseModel]:
    """The JSON body of ``/v1/generate``; ``n`` is capped by the server's ``--max-generate``."""

    class GenerateRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        n: int = Field(16, ge=1, le=max_generate, description="Number of images.")
        sampler: Literal[SAMPLERS] = Field(DEFAULT_SAMPLER, description="Latent sampler.")
        seed: int = Field(0, ge=0, le=2**32 - 1, description="Same seed, same images.")
        format: ImageFormat | None = Field(None, description="png (a grid), list or png_base64; default from Accept.")
        scale: int = Field(
            DEFAULT_SCALE,
            ge=1,
            le=MAX_SCALE,
            description="Format png: PNG pixels per image pixel, nearest neighbour (1 keeps 28 px per image).",
        )
        label: Annotated[int, Field(ge=0, le=len(CLASS_NAMES) - 1)] | Literal[CLASS_NAMES] | None = Field(
            None,
            alias="class",
            description="Only this class (the kde sampler): its label number or its name, e.g. 7 or Sneaker; "
            "bundles exported since format 2. Default: any class.",
        )

    return GenerateRequest
