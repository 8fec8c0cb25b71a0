"""``POST /v1/generate``: new images from one of the bundle's latent samplers."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmnist.contract.samplers import parse_class
from fmnist.serve.dependencies import require_json, serving
from fmnist.serve.responses import images_response
from fmnist.serve.schemas import ERRORS, PNG_RESPONSE, ImagesResponse, generate_request
from fmnist.serve.settings import Settings


def router(settings: Settings) -> APIRouter:
    """The route; its body allows ``n`` up to ``settings.max_generate``."""
    GenerateRequest = generate_request(settings.max_generate)

    async def generate(body: GenerateRequest, request: Request) -> Response:  # type: ignore[valid-type]
        """New images from the chosen latent sampler."""
        model = serving(request).model
        label = None if body.label is None else parse_class(body.label, model.class_names)
        x = await run_in_threadpool(model.generate, body.n, body.sampler, body.seed, label)
        return await images_response(x, None, body.format, request, body.scale)

    routes = APIRouter(tags=["model"])
    routes.post(
        "/v1/generate",
        response_model=ImagesResponse,
        responses={**ERRORS, **PNG_RESPONSE},
        dependencies=[Depends(require_json)],
    )(generate)
    return routes
