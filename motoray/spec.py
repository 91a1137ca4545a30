"""What a user may ask: the request models, and parsing a request body.

The accepted shape is the original system's (`examples/requests/`): one object
or a list of them. Every operator contributes its own parameter model, so the
request model is built from the operators a config enables; unknown fields,
operators and positions are errors that name their path.

An augmentation object maps operator names to parameters; each is one step, applied to
the (resized) image on its own. `CHAIN` is one more step: a list of single-operator
objects applied one after the other, e.g. `{"CHAIN": [{"RANDOM_CROP": {...}}, {"FLIP": {}}]}`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from fractions import Fraction
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from motoray.config import Config, LimitsConfig
from motoray.ops import operators_for
from motoray.ops.registry import Operator, Shape, Side
from motoray.ops.steps import CHAIN, first_misfit, stages_of
from motoray.regex import compile_user_regex

# The original system's sample request: examples/requests/seed_sample.json, /docs, the bench.
SEED_REQUEST = {
    "name": "MotoGP",
    "input_image_size": [480, 270],
    "augmentations": [
        {
            "CROP": {"crop_dimensions": [[270, 270]], "crop_type": "left_down_center"},
            "RANDOM_CROP": {"crop_dimensions": [80, 80], "target_count": 3},
        }
    ],
    "train_test_split": {"train_ratio": 80, "test_ratio": 20},
}
MAX_REQUESTS_PER_BODY = 100
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$"
Ratio = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
MAX_GROUP_BY_LENGTH = 300  # a regex runs on every key: keep patterns short
MAX_CHAIN_STAGES = 8
MAX_BOX_AREA = 2**32  # pixels: bigger than any output


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainTestSplit(_Strict):
    """Percentages summing to 100, or fractions summing to 1 (validation included)."""

    train_ratio: Ratio = Field(description="share of images in `train`")
    test_ratio: Ratio = Field(description="share of images in `test`")
    validation_ratio: Ratio | None = Field(None, description="a third split, `validation`")
    group_by: str = Field(
        "image",
        max_length=MAX_GROUP_BY_LENGTH,
        description='keep groups in one split: "image", "folder" (the parent folder), or '
        '"regex:<pattern>" over the source key (first capture group, else the whole match); '
        'video sources: "video" (their default) or "segment:<seconds>" (time segments)',
    )
    stratify: bool = Field(
        False,
        strict=True,
        description="keep the class proportions in every split (needs a labelled source)",
    )

    @field_validator("group_by")
    @classmethod
    def _known_grouping(cls, value: str) -> str:
        if value in ("image", "folder", "video"):
            return value
        if value.startswith("segment:"):
            segment_seconds(value)
            return value
        if not value.startswith("regex:"):
            raise ValueError(
                'must be "image", "folder", "regex:<pattern>", "video" or "segment:<seconds>", '
                f"got {value!r}"
            )
        pattern = value.removeprefix("regex:")
        if not pattern:
            raise ValueError('"regex:" needs a pattern, e.g. "regex:^([^_]+)_"')
        compile_user_regex(pattern)
        return value

    @model_validator(mode="after")
    def _sums_to_whole(self) -> TrainTestSplit:
        total = self.train_ratio + self.test_ratio + (self.validation_ratio or 0)
        if not (abs(total - 100) < 1e-9 or abs(total - 1) < 1e-9):
            names = "train_ratio + test_ratio" + (
                " + validation_ratio" if self.validation_ratio is not None else ""
            )
            raise ValueError(f"{names} must sum to 100 (percent) or 1 (fractions), got {total:g}")
        return self

    @property
    def fractions(self) -> dict[str, Fraction]:
        """Split name -> its exact share, in fill order: train, validation (if any), test.

        Exact, so that round(n * train) does not depend on float noise.
        """
        ratios = {"train": self.train_ratio, "validation": self.validation_ratio}
        exact = {name: Fraction(str(r)) for name, r in ratios.items() if r is not None}
        exact["test"] = Fraction(str(self.test_ratio))
        total = sum(exact.values())
        return {name: share / total for name, share in exact.items()}


def segment_seconds(group_by: str) -> float:
    """The segment length of `group_by: "segment:<seconds>"` (whole milliseconds, > 0)."""
    text = group_by.removeprefix("segment:")
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (0.001 <= seconds <= 10**6) or abs(seconds * 1000 - round(seconds * 1000)) > 1e-6:
        raise ValueError(f'"segment:<seconds>" needs seconds from 0.001 to 1e6, got {text!r}')
    return seconds


AnnotationFormat = Literal["coco", "yolo"]


class BoxOptions(_Strict):
    """How boxes are sanitised per output (a source with annotations only)."""

    min_visibility: float = Field(
        0.3,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="drop a box whose visible part is less than this fraction of the whole box",
    )
    min_area: float = Field(
        1.0,
        ge=0,
        le=MAX_BOX_AREA,
        allow_inf_nan=False,
        description="drop a box whose visible part is smaller than this, in output pixels",
    )


class OutputOptions(_Strict):
    format: Literal["files", "webdataset"] = Field(
        "files",
        description='"files": one JPEG per output under <split>/; "webdataset": tar shards '
        "<split>/shard-000000.tar, ... of <sample>.jpg + <sample>.json",
    )
    shard_size_mb: int = Field(
        256, strict=True, ge=1, le=1024, description="webdataset: target size of one shard, MiB"
    )
    quality: int = Field(90, strict=True, ge=1, le=100, description="JPEG quality")
    annotations: list[AnnotationFormat] | None = Field(
        None,
        exclude_if=lambda value: value is None,  # requests without boxes dump as they did
        max_length=2,
        description='box files for trainers, a source with annotations only: "coco" '
        '(annotations/<split>.json) and/or "yolo" (a .txt beside each image + data.yaml); '
        "default: the source's format (webdataset: none, boxes are in each sample's .json)",
    )

    @model_validator(mode="after")
    def _shards_only(self) -> OutputOptions:
        if "shard_size_mb" in self.model_fields_set and self.format != "webdataset":
            raise ValueError('shard_size_mb applies to format "webdataset" only')
        if self.annotations and self.format == "webdataset":
            raise ValueError(
                'annotations applies to format "files"; webdataset samples carry their boxes '
                "in their .json"
            )
        if self.annotations and len(set(self.annotations)) != len(self.annotations):
            raise ValueError("annotations names a format twice")
        return self

    def annotation_formats(self, source_format: str) -> tuple[str, ...]:
        """The box files to write, for a source whose annotations are in `source_format`."""
        if self.annotations is not None:
            return tuple(sorted(self.annotations))
        return () if self.format == "webdataset" else (source_format,)


class RequestBase(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description="a registered data source")
    input_image_size: tuple[Side, Side] | None = Field(
        None, description="[width, height]: resize every image to exactly this first"
    )
    train_test_split: TrainTestSplit | None = Field(
        None, description="train/test (and validation) split; omitted: one `all` split"
    )
    seed: int = Field(0, strict=True, ge=0, le=2**63 - 1, description="seed of every random choice")
    include_original: bool | None = Field(
        None, description="also write the resized image itself (default: only if no augmentations)"
    )
    output: OutputOptions = Field(
        default_factory=OutputOptions, description="how outputs are written"
    )
    boxes: BoxOptions | None = Field(
        None,
        exclude_if=lambda value: value is None,  # requests without boxes dump as they did
        description="box sanitising, for a source with annotations (default: BoxOptions)",
    )

    @property
    def box_options(self) -> BoxOptions:
        return self.boxes or BoxOptions()

    @property
    def steps(self) -> list[tuple[str, Any]]:
        """(operator name, params) in request order; the position is the operator index.

        Within one augmentation object, steps come in operator-name order, CHAIN last; a
        CHAIN step's params are its list of stages (see `stages_of`).
        """
        return [
            (name, params)
            for augmentation in self.augmentations  # type: ignore[attr-defined]
            for name, params in augmentation
            if params is not None
        ]

    @property
    def writes_original(self) -> bool:
        if self.include_original is None:
            return not self.steps
        return self.include_original


@lru_cache(maxsize=32)
def _request_model(operators: tuple[tuple[str, Operator], ...]) -> type[RequestBase]:
    names = [name for name, _ in operators]
    if CHAIN in names:
        raise ValueError(f"{CHAIN} is a reserved name: an operator cannot be called that")
    params = {name: (op.params | None, None) for name, op in operators}

    def unknown_operators(value: dict) -> None:
        unknown = [k for k in value if k not in names and k != CHAIN]
        if unknown:
            raise ValueError(
                f"unknown operator {unknown[0]!r}; available: {', '.join(names) or 'none'}"
            )

    def known_operators_only(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown_operators(value)
            if not value:
                raise ValueError(
                    f"empty augmentation: name at least one of {', '.join(names)} (or {CHAIN})"
                )
        return value

    def one_operator(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown_operators(value)
            if CHAIN in value:
                raise ValueError(f"{CHAIN} cannot be nested: list its operators in this chain")
            named = [k for k, v in value.items() if v is not None]
            if len(named) != 1:
                raise ValueError(
                    f"a {CHAIN} stage names exactly one operator, got {len(named)}"
                    + (f" ({', '.join(named)})" if named else "")
                    + "; apply several with one stage each"
                )
        return value

    stage = create_model(
        "ChainStage",
        __config__=ConfigDict(extra="forbid", frozen=True),
        __validators__={"_one": model_validator(mode="before")(one_operator)},
        **params,
    )
    augmentation = create_model(
        "Augmentation",
        __config__=ConfigDict(extra="forbid", frozen=True),
        __validators__={"_known": model_validator(mode="before")(known_operators_only)},
        **params,
        CHAIN=(
            list[stage] | None,  # type: ignore[valid-type]
            Field(
                None,
                min_length=1,
                max_length=MAX_CHAIN_STAGES,
                description="operators applied one after the other, one per stage: "
                '[{"RANDOM_CROP": {...}}, {"FLIP": {...}}]. Outputs per image: the product '
                "of the stages' copies (copy index mixed-radix, the last stage fastest)",
            ),
        ),
    )
    return create_model(
        "DataPrepRequest",
        __base__=RequestBase,
        augmentations=(
            list[augmentation],  # type: ignore[valid-type]
            Field(
                default_factory=list,
                max_length=64,
                description="steps, each {OPERATOR: params, ...}: every operator applies to "
                "the resized image on its own",
            ),
        ),
    )


def request_model(operators: dict[str, Operator]) -> type[RequestBase]:
    """The request model for this set of operators (cached)."""
    return _request_model(tuple(sorted(operators.items())))


class RequestError(ValueError):
    """A request body that cannot be accepted.

    `errors` is a list of {"loc": [path...], "msg": str}; `status` is 400 for a
    body that is not JSON, 422 for one that is JSON but not a valid request.
    """

    def __init__(self, errors: list[dict], status: int = 422):
        self.errors = errors
        self.status = status
        super().__init__("; ".join(f"{_dotted(e['loc'])}: {e['msg']}" for e in errors))


def _dotted(loc: list) -> str:
    return ".".join(str(part) for part in loc) or "body"


def parse_json(body: bytes | str) -> Any:
    """JSON text -> object; a syntax error says where (line and column)."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise RequestError(
            [{"loc": [], "msg": f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"}],
            status=400,
        ) from None
    except UnicodeDecodeError as e:
        raise RequestError([{"loc": [], "msg": f"body is not UTF-8: {e.reason}"}], 400) from None


def parse_requests(
    body: Any,
    operators: dict[str, Operator],
    sources: list[str] | None = None,
    limits: LimitsConfig | None = None,
    max_requests: int = MAX_REQUESTS_PER_BODY,
    annotated: Collection[str] = (),
) -> list[RequestBase]:
    """A decoded body (object or list of objects) -> validated requests.

    With `sources`, a name that is not a registered source is an error too, and so is what
    needs boxes on a source that has none (not in `annotated`), or an operator that cannot
    move boxes on one that has them. `limits` are
    the request budgets (default: LimitsConfig's); `max_requests` caps a list body (the
    service: its max_pending_jobs, a body it could never accept is not worth a 429).
    Every problem in every request is reported, each with its path
    ([index, field, ...] when the body is a list).
    """
    limits = limits or LimitsConfig()
    is_list = isinstance(body, list)
    items = body if is_list else [body]
    if is_list and not items:
        raise RequestError([{"loc": [], "msg": "empty list: send at least one request"}])
    most = min(max_requests, MAX_REQUESTS_PER_BODY)
    if len(items) > most:
        raise RequestError(
            [{"loc": [], "msg": f"{len(items)} requests in one body; at most {most}"}]
        )
    model = request_model(operators)
    requests, errors = [], []
    for index, item in enumerate(items):
        prefix = [index] if is_list else []
        try:
            request = model.model_validate(item)
        except ValidationError as e:
            errors += [
                {"loc": prefix + list(err["loc"]), "msg": err["msg"]}
                for err in e.errors(include_url=False, include_input=False)
            ]
            continue
        errors += [
            {"loc": prefix + loc, "msg": msg}
            for loc, msg in semantic_errors(request, operators, limits)
        ]
        if sources is not None and request.name not in sources:
            errors.append(
                {
                    "loc": [*prefix, "name"],
                    "msg": f"unknown data source {request.name!r}; "
                    f"registered: {', '.join(sorted(sources)) or 'none'}",
                }
            )
        elif sources is not None:
            errors += [
                {"loc": prefix + loc, "msg": msg}
                for loc, msg in box_errors(request, operators, request.name in annotated)
            ]
        requests.append(request)
    if errors:
        raise RequestError(errors)
    return requests


def parse_for(
    config: Config, body: Any, max_requests: int = MAX_REQUESTS_PER_BODY
) -> list[RequestBase]:
    """`parse_requests` against what `config` offers: its sources, its operators (plugins
    included, disabled ones left out), its limits and its annotated sources."""
    return parse_requests(
        body,
        operators_for(config.operators),
        list(config.sources),
        config.limits,
        max_requests,
        annotated=config.annotated_sources(),
    )


def parse_one_for(config: Config, body: Any) -> RequestBase:
    """One request (preview, plan, a job's driver): a list of one is fine, as the original
    clients send it; a longer one is refused rather than cut, over HTTP and the CLI alike."""
    requests = parse_for(config, body)
    if len(requests) != 1:
        raise RequestError([{"loc": [], "msg": f"takes one request, got {len(requests)}"}])
    return requests[0]


def semantic_errors(
    request: RequestBase, operators: dict[str, Operator], limits: LimitsConfig
) -> list[tuple[list, str]]:
    """Checks across fields, where the answer is knowable now: the budgets of `limits`; a
    stage that needs a bigger image than input_image_size or the CHAIN stage before it makes;
    a request that writes nothing."""
    size = request.input_image_size
    shape = None if size is None else (size[1], size[0])
    found = []
    if size is not None:
        if max(size) > limits.max_resize_side:
            found.append((["input_image_size"], f"at most {limits.max_resize_side} per side"))
        elif size[0] * size[1] > limits.max_resize_pixels:
            found.append(
                (["input_image_size"], f"at most {limits.max_resize_pixels} pixels in all")
            )
    for index, augmentation in enumerate(request.augmentations):  # type: ignore[attr-defined]
        for name, params in augmentation:
            if params is not None:
                found += _step_errors(["augmentations", index, name], params, operators, shape)
    outputs = outputs_per_image(request, operators)
    if outputs > limits.max_outputs_per_image:
        found.append(
            (
                ["augmentations"],
                f"makes {outputs} outputs per image, every step together; at most "
                f"{limits.max_outputs_per_image} (limits.max_outputs_per_image)",
            )
        )
    if outputs == 0:
        found.append(([], "writes nothing: add augmentations, or leave include_original unset"))
    return found


def box_errors(
    request: RequestBase, operators: dict[str, Operator], annotated: bool
) -> list[tuple[list, str]]:
    """On a source with annotations, every stage must move boxes; on one without, nothing
    may ask for them."""
    found = []
    source = repr(request.name)
    for index, augmentation in enumerate(request.augmentations):  # type: ignore[attr-defined]
        for name, params in augmentation:
            if params is None:
                continue
            for number, (stage, stage_params) in enumerate(stages_of(name, params)):
                where = ["augmentations", index, name]
                where += [number, stage] if name == CHAIN else []
                operator = operators[stage]
                if annotated and operator.box_kernel is None:
                    found.append(
                        (
                            where,
                            f"operator {stage} has no box kernel: it cannot move the boxes of "
                            f"source {source}, which has annotations",
                        )
                    )
                if not annotated and operator.uses_boxes(stage_params):
                    found.append(
                        (
                            where,
                            f"{stage} with these parameters places its output by the image's "
                            f"boxes: source {source} has no annotations",
                        )
                    )
    if not annotated:
        if request.boxes is not None:
            found.append((["boxes"], f"applies to a source with annotations; {source} has none"))
        if request.output.annotations:
            found.append(
                (["output", "annotations"], f"needs a source with annotations; {source} has none")
            )
    return found


def outputs_per_image(request: RequestBase, operators: dict[str, Operator]) -> int:
    """Outputs a request makes of every image: a CHAIN makes the product of its stages'."""
    return int(request.writes_original) + sum(
        math.prod(operators[n].copies(p) for n, p in stages_of(name, params))
        for name, params in request.steps
    )


def _step_errors(
    where: list, params: Any, operators: dict[str, Operator], shape: Shape | None
) -> list[tuple[list, str]]:
    name = where[-1]
    stages = stages_of(name, params)
    chain = [(operators[n], p) for n, p in stages]
    found = []
    misfit = first_misfit(chain, shape)
    if misfit is not None:
        number, (need_h, need_w), (got_h, got_w) = misfit
        if number == 0:
            got = f"input_image_size is {got_w}x{got_h} (width x height)"
        else:
            got = f"{CHAIN} stage {number - 1} ({stages[number - 1][0]}) makes {got_h}x{got_w}"
        path = where if name != CHAIN else [*where, number, stages[number][0]]
        found.append(
            (path, f"needs an image of at least {need_h}x{need_w} (height x width) but {got}")
        )
    return found
