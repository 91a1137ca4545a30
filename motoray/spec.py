"""What a user may ask: the request models, and parsing a request body.

The accepted shape is the original system's (`examples/requests/`): one object
or a list of them. Every operator contributes its own parameter model, so the
request model is built from the operators a config enables; unknown fields,
operators and positions are errors that name their path.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from motoray.ops.registry import Operator, Side

MAX_REQUESTS_PER_BODY = 100
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$"
Ratio = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
MAX_GROUP_BY_LENGTH = 300  # a regex runs on every key: keep patterns short


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainTestSplit(_Strict):
    """Percentages summing to 100, or fractions summing to 1 (validation included)."""

    train_ratio: Ratio
    test_ratio: Ratio
    validation_ratio: Ratio | None = Field(None, description="a third split, `validation`")
    group_by: str = Field(
        "image",
        max_length=MAX_GROUP_BY_LENGTH,
        description='keep groups in one split: "image", "folder" (the parent folder), or '
        '"regex:<pattern>" over the source key (first capture group, else the whole match)',
    )
    stratify: bool = Field(
        False,
        strict=True,
        description="keep the class proportions in every split (needs a labelled source)",
    )

    @field_validator("group_by")
    @classmethod
    def _known_grouping(cls, value: str) -> str:
        if value in ("image", "folder"):
            return value
        if not value.startswith("regex:"):
            raise ValueError(f'must be "image", "folder" or "regex:<pattern>", got {value!r}')
        pattern = value.removeprefix("regex:")
        if not pattern:
            raise ValueError('"regex:" needs a pattern, e.g. "regex:^([^_]+)_"')
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None
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

    @property
    def train_fraction(self) -> Fraction:
        return self.fractions["train"]


class OutputOptions(_Strict):
    quality: int = Field(90, strict=True, ge=1, le=100, description="JPEG quality")


class RequestBase(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description="a registered data source")
    input_image_size: tuple[Side, Side] | None = Field(
        None, description="[width, height]: resize every image to exactly this first"
    )
    train_test_split: TrainTestSplit | None = None
    seed: int = Field(0, strict=True, ge=0, le=2**63 - 1, description="seed of every random choice")
    include_original: bool | None = Field(
        None, description="also write the resized image itself (default: only if no augmentations)"
    )
    output: OutputOptions = Field(default_factory=OutputOptions)

    @property
    def steps(self) -> list[tuple[str, BaseModel]]:
        """(operator name, params) in request order; the position is the operator index."""
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

    def known_operators_only(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = [k for k in value if k not in names]
            if unknown:
                raise ValueError(
                    f"unknown operator {unknown[0]!r}; available: {', '.join(names) or 'none'}"
                )
            if not value:
                raise ValueError(f"empty augmentation: name at least one of {', '.join(names)}")
        return value

    augmentation = create_model(
        "Augmentation",
        __config__=ConfigDict(extra="forbid", frozen=True),
        __validators__={"_known": model_validator(mode="before")(known_operators_only)},
        **{name: (op.params | None, None) for name, op in operators},
    )
    return create_model(
        "DataPrepRequest",
        __base__=RequestBase,
        augmentations=(
            list[augmentation],  # type: ignore[valid-type]
            Field(default_factory=list, max_length=64),
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
    body: Any, operators: dict[str, Operator], sources: list[str] | None = None
) -> list[RequestBase]:
    """A decoded body (object or list of objects) -> validated requests.

    With `sources`, a name that is not a registered source is an error too.
    Every problem in every request is reported, each with its path
    ([index, field, ...] when the body is a list).
    """
    is_list = isinstance(body, list)
    items = body if is_list else [body]
    if is_list and not items:
        raise RequestError([{"loc": [], "msg": "empty list: send at least one request"}])
    if len(items) > MAX_REQUESTS_PER_BODY:
        raise RequestError(
            [{"loc": [], "msg": f"at most {MAX_REQUESTS_PER_BODY} requests per body"}]
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
            {"loc": prefix + loc, "msg": msg} for loc, msg in semantic_errors(request, operators)
        ]
        if sources is not None and request.name not in sources:
            errors.append(
                {
                    "loc": [*prefix, "name"],
                    "msg": f"unknown data source {request.name!r}; "
                    f"registered: {', '.join(sorted(sources)) or 'none'}",
                }
            )
        requests.append(request)
    if errors:
        raise RequestError(errors)
    return requests


def semantic_errors(request: RequestBase, operators: dict[str, Operator]) -> list[tuple[list, str]]:
    """Checks across fields: a crop larger than input_image_size is knowable now."""
    if request.input_image_size is None:
        return []
    width, height = request.input_image_size
    found = []
    for index, augmentation in enumerate(request.augmentations):  # type: ignore[attr-defined]
        for name, params in augmentation:
            if params is None:
                continue
            min_h, min_w = operators[name].min_shape(params)
            if min_h > height or min_w > width:
                found.append(
                    (
                        ["augmentations", index, name],
                        f"needs an image of at least {min_h}x{min_w} (height x width) "
                        f"but input_image_size is {width}x{height} (width x height)",
                    )
                )
    return found
