"""Checks across fields, where the answer is knowable from the request and the config alone:
budgets, crop sizes, what a source offers. Each returns (path, message) pairs."""

from __future__ import annotations

import math
from typing import Any

from motoray.config import LimitsConfig, SourceConfig
from motoray.ops.registry import Operator, Shape
from motoray.ops.steps import CHAIN, first_misfit, stages_of
from motoray.spec.parts import VIDEO_GROUPINGS
from motoray.spec.request import RequestBase


def semantic_errors(
    request: RequestBase, operators: dict[str, Operator], limits: LimitsConfig
) -> list[tuple[list, str]]:
    """Checks across fields, where the answer is knowable now: the budgets of `limits` (one
    image's outputs over max_outputs_per_job are over it for any listing); a
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
    if outputs > limits.max_outputs_per_job:  # any listing but an empty one is over it
        found.append(
            (
                ["augmentations"],
                f"makes {outputs} outputs per image; at most {limits.max_outputs_per_job} per "
                "job (limits.max_outputs_per_job)",
            )
        )
    elif outputs > limits.max_outputs_per_image:
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


def source_errors(request: RequestBase, source: SourceConfig) -> list[tuple[list, str]]:
    """What the source's config already refuses: a grouping of the other kind of source, and
    stratifying a source without labels (neither `labels` nor `annotations`)."""
    split = request.train_test_split
    if split is None:
        return []
    found = []
    name = repr(request.name)
    chosen = split.group_by if "group_by" in split.model_fields_set else None
    if source.kind == "video" and chosen == "image":
        found.append(
            (
                ["train_test_split", "group_by"],
                f'"image" on video source {name} would put frames of one video in several '
                'splits: use "video" (the default), "segment:<seconds>", "folder" or "regex:"',
            )
        )
    if source.kind != "video" and chosen is not None and chosen.startswith(VIDEO_GROUPINGS):
        found.append(
            (
                ["train_test_split", "group_by"],
                f'"{chosen}" is for video sources (`kind: video`); {name} is a source of images',
            )
        )
    near = split.near_duplicates
    if source.kind == "video" and near is not None and near.dedupe:
        found.append(
            (
                ["train_test_split", "near_duplicates", "dedupe"],
                f"dedupe is for sources of images; {name} is a video source (its near-duplicate "
                "frames are still kept in one split)",
            )
        )
    if split.stratify and source.labels is None and source.annotations is None:
        found.append(
            (
                ["train_test_split", "stratify"],
                f"stratify needs a labelled source: {name} has neither `labels: folder` nor "
                "annotations in the config; label it there, or drop stratify",
            )
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
