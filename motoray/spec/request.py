"""The request model, built from the operators a config enables: every operator contributes
its own parameter model, so unknown operators and parameters are errors that name their
path."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import ConfigDict, Field, create_model, model_validator

from motoray.ops.registry import Operator, Side
from motoray.ops.steps import CHAIN
from motoray.spec.parts import BoxOptions, OutputOptions, StrictModel, TrainTestSplit

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
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$"
MAX_CHAIN_STAGES = 8


class RequestBase(StrictModel):
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
