"""What a user may ask: the request models, and parsing a request body.

The accepted shape is the original system's (`examples/requests/`): one object
or a list of them. Every operator contributes its own parameter model, so the
request model is built from the operators a config enables; unknown fields,
operators and positions are errors that name their path.

An augmentation object maps operator names to parameters; each is one step, applied to
the (resized) image on its own. `CHAIN` is one more step: a list of single-operator
objects applied one after the other, e.g. `{"CHAIN": [{"RANDOM_CROP": {...}}, {"FLIP": {}}]}`.

    parts.py    the split, box and output options
    request.py  the request model, built from the enabled operators
    checks.py   checks across fields, knowable from the request and the config
    parse.py    a body (JSON text, one object or a list) to validated requests
"""

from motoray.spec.checks import box_errors, outputs_per_image, semantic_errors, source_errors
from motoray.spec.parse import (
    MAX_REQUESTS_PER_BODY,
    RequestError,
    parse_for,
    parse_json,
    parse_one_for,
    parse_requests,
)
from motoray.spec.parts import (
    BoxOptions,
    NearDuplicates,
    OutputOptions,
    TrainTestSplit,
    segment_seconds,
)
from motoray.spec.request import SEED_REQUEST, RequestBase, request_model

__all__ = [
    "MAX_REQUESTS_PER_BODY",
    "SEED_REQUEST",
    "BoxOptions",
    "NearDuplicates",
    "OutputOptions",
    "RequestBase",
    "RequestError",
    "TrainTestSplit",
    "box_errors",
    "outputs_per_image",
    "parse_for",
    "parse_json",
    "parse_one_for",
    "parse_requests",
    "request_model",
    "segment_seconds",
    "semantic_errors",
    "source_errors",
]
