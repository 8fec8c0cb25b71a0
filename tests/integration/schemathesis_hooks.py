"""Schemathesis hooks for test_schemathesis.py (loaded through $SCHEMATHESIS_HOOKS).

They close the two gaps between the schema and the server that no OpenAPI schema can express,
and touch only cases generated as valid (positive); negative cases are sent as generated:

1. An upload's ``file`` is ``format: binary``, and random bytes are not an image: the server
   refuses them with 400. Each uploaded file becomes a real 28x28 PNG, so that
   ``positive_data_acceptance`` tests the rest of the request.
2. JSON Schema's ``integer`` includes integral floats (``117.0``, ``1e3``), while the server's
   strict types refuse a float literal where an integer belongs (``{"n": 1e3}`` is a 422 by
   design). Integral floats in a JSON body are sent as integers.
3. ``/v1/generate``'s ``class`` is drawn by the samplers that have one KDE per class (kde) only: a
   valid case that names a class is sent with that sampler.
"""

import io

import schemathesis
from PIL import Image

UPLOAD_ROUTES = {"/v1/classify", "/v1/encode", "/v1/reconstruct"}


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28), 90).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


@schemathesis.hook
def map_case(ctx, case):
    positive = case.meta is not None and case.meta.generation.mode == schemathesis.GenerationMode.POSITIVE
    if not positive or not isinstance(case.body, dict):
        return case
    if case.operation.path in UPLOAD_ROUTES:
        files = case.body.get("file")
        if isinstance(files, list):
            case.body["file"] = [PNG for _ in files]
    else:
        for key, value in case.body.items():
            if isinstance(value, float) and value.is_integer():
                case.body[key] = int(value)
        if case.operation.path == "/v1/generate" and case.body.get("class") is not None:
            case.body["sampler"] = "kde"
    return case
