"""Steps: what one entry of an augmentation object does to a stack of images.

A step is one operator, or a CHAIN of them. `apply_step` is the one loop that samples and
applies operators; the pipeline, the preview and the tests all go through it, so what they
show is what a job writes. Pure NumPy: no Ray, no storage.

With boxes, the same loop maps them through each stage's box kernel with the params it just
sampled for the pixels, and clips them to that stage's output.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from motoray.ops.boxes import Boxes
from motoray.ops.registry import Operator, Shape
from motoray.seeding import derive_rng

CHAIN = "CHAIN"  # the step that applies several operators one after the other


@dataclass(frozen=True)
class Stage:
    operator: Operator
    params: BaseModel


@dataclass(frozen=True)
class Step:
    """One entry of an augmentation object: an operator, or a CHAIN of them.

    Stage s makes n_s copies of every output of stage s-1, each sampled from the shape that
    output has; a chain's copy index is c = (...(c_0 * n_1 + c_1) * n_2 + ...) + c_last, the
    last stage fastest, as in nested loops over the stages.
    """

    index: int  # position in the request: part of every derived seed
    stages: tuple[Stage, ...]
    chain: bool = False

    @property
    def name(self) -> str:
        """The manifest's operator column: RANDOM_CROP, or RANDOM_CROP+FLIP for a chain."""
        return "+".join(stage.operator.name for stage in self.stages)

    @property
    def copies(self) -> int:
        """Outputs per image."""
        return math.prod(stage.operator.copies(stage.params) for stage in self.stages)

    def pixels_held(self, shape: Shape) -> int:
        """Pixels one image's outputs of this step hold at most at once: depth first, one
        output per stage (the largest of its copies)."""
        total, shapes = 0, {shape}
        for stage in self.stages:
            op, params = stage.operator, stage.params
            shapes = {
                op.output_shape(params, s, copy) or s
                for s in shapes
                for copy in range(op.copies(params))
            }
            total += max(h * w for h, w in shapes)
        return total

    def misfit(self, shape: Shape | None) -> str | None:
        """Why an image of this shape cannot go through every stage; None if it can."""
        found = first_misfit([(s.operator, s.params) for s in self.stages], shape)
        if found is None:
            return None
        number, (need_h, need_w), (got_h, got_w) = found
        needs = (
            f"{self.stages[number].operator.name} needs at least {need_h}x{need_w} (height x width)"
        )
        if number == 0:
            return f"{needs}, image is {got_h}x{got_w}"
        before = self.stages[number - 1].operator.name
        return f"{needs}, {CHAIN} stage {number - 1} ({before}) makes {got_h}x{got_w}"


@dataclass(frozen=True)
class StepOutput:
    """One copy of a step for a whole stack of images."""

    copy: int  # the step's copy index (mixed radix over a chain's stages)
    params: list[dict]  # the concrete params recorded per image
    images: np.ndarray  # N x h x w x C uint8
    # Which images of the stack `images` are, when some have no such output; None: all.
    members: np.ndarray | None = None
    boxes: Boxes | None = None  # their boxes (owner: position in `images`), if the stack has any
    skipped: tuple[int, ...] = ()  # images of the stack without this output (no window found)

    def sources(self) -> np.ndarray | range:
        """The stack index of every output image."""
        return range(len(self.images)) if self.members is None else self.members


def stages_of(name: str, params: Any) -> list[tuple[str, BaseModel]]:
    """The (operator name, params) a step applies in order: one, or a CHAIN's stages."""
    if name != CHAIN:
        return [(name, params)]
    return [(n, p) for stage in params for n, p in stage if p is not None]


def make_steps(
    steps: Sequence[tuple[str, Any]], operators: Mapping[str, Operator]
) -> tuple[Step, ...]:
    """A request's (name, params) steps, in order, bound to the operators that run them."""
    return tuple(
        Step(
            index,
            tuple(Stage(operators[n], p) for n, p in stages_of(name, params)),
            chain=name == CHAIN,
        )
        for index, (name, params) in enumerate(steps)
    )


def apply_step(
    step: Step,
    images: np.ndarray,
    keys: Sequence[str],
    seed: int,
    boxes: Boxes | None = None,
) -> Iterator[StepOutput]:
    """Every copy of `step` for a stack of same-shaped images (image i has source key
    keys[i]), depth first through a chain's stages: one branch is in memory at a time.
    `boxes`, if the images have any, go through every stage with them.

    Randomness comes only from (seed, key, step index, copy so far, stage), so an image's
    outputs never depend on which other images share its stack.
    """
    yield from _stages(step, _Branch(images, list(keys), None, boxes, None), seed, 0, 0)


@dataclass(frozen=True)
class _Branch:
    """What one stage of a chain is given: images, their keys, the params applied so far,
    their boxes, and which images of the original stack they are (None: all of them)."""

    images: np.ndarray
    keys: list[str]
    applied: list[list[dict]] | None
    boxes: Boxes | None
    members: np.ndarray | None

    def taking(self, present: list[int]) -> _Branch:
        """Only the images at `present` (positions in this branch)."""
        index = np.array(present, np.intp)
        members = index if self.members is None else self.members[index]
        return _Branch(
            self.images[index],
            [self.keys[i] for i in present],
            None if self.applied is None else [self.applied[i] for i in present],
            None if self.boxes is None else self.boxes.take(index),
            members,
        )


def _stages(step: Step, branch: _Branch, seed: int, stage: int, path: int) -> Iterator[StepOutput]:
    operator, params = step.stages[stage].operator, step.stages[stage].params
    copies = operator.copies(params)
    shape = branch.images.shape[1:3]
    for copy in range(copies):
        node = path * copies + copy
        # Stage 0 is seeded as a plain step always was, so its outputs do not change; a later
        # stage adds its number, and `node` (the copy index so far) tells its copies apart.
        parts = (stage,) if stage else ()
        sampled: list[dict | None] = []
        for n, key in enumerate(branch.keys):
            derived, rng = derive_rng(seed, key, step.index, node, *parts)
            if branch.boxes is not None and operator.box_sample is not None:
                concrete = operator.box_sample(params, rng, shape, copy, branch.boxes.of_image(n))
            else:
                concrete = operator.sample(params, rng, shape, copy)
            if concrete is not None and operator.random:
                concrete = {**concrete, "seed": derived}
            sampled.append(concrete)
        here = branch
        if any(p is None for p in sampled):
            present = [n for n, p in enumerate(sampled) if p is not None]
            absent = [n for n, p in enumerate(sampled) if p is None]
            yield from _skipped(step, stage, node, branch, absent)
            if not present:
                continue
            here, sampled = branch.taking(present), [sampled[n] for n in present]
        outputs = operator.kernel(here.images, sampled)
        boxes = here.boxes
        if boxes is not None:
            if operator.box_kernel is None:  # requests are refused before this; say why anyway
                raise ValueError(f"operator {operator.name} has no box kernel to move boxes")
            boxes = boxes.mapped(operator.box_kernel, sampled, shape, outputs.shape[1:3])
        applied = here.applied
        so_far = [[*a, p] for a, p in zip(applied, sampled)] if applied else [[p] for p in sampled]
        after = _Branch(outputs, here.keys, so_far, boxes, here.members)
        if stage + 1 < len(step.stages):
            yield from _stages(step, after, seed, stage + 1, node)
        elif step.chain:
            chains = [
                [{"operator": s.operator.name, **p} for s, p in zip(step.stages, a)] for a in so_far
            ]
            params_out = [{"chain": chain} for chain in chains]
            yield StepOutput(node, params_out, outputs, here.members, boxes)
        else:
            yield StepOutput(node, [a[0] for a in so_far], outputs, here.members, boxes)


def _skipped(
    step: Step, stage: int, node: int, branch: _Branch, absent: list[int]
) -> Iterator[StepOutput]:
    """The outputs that images at `absent` will not have: every copy that would have come
    from this node of this stage."""
    later = math.prod(s.operator.copies(s.params) for s in step.stages[stage + 1 :])
    members = [int(branch.members[n]) if branch.members is not None else n for n in absent]
    empty = branch.images[:0]
    for copy in range(node * later, (node + 1) * later):
        yield StepOutput(copy, [], empty, np.zeros(0, np.intp), None, tuple(members))


def first_misfit(
    stages: Sequence[tuple[Operator, Any]], shape: Shape | None
) -> tuple[int, Shape, Shape] | None:
    """The first stage given a smaller image than it needs: (stage number, needs, gets).

    `shape` None: the input size is unknown; a later stage is still checked when an earlier
    one fixes the size (a crop). Every copy of a stage is followed, so a stage after CROP with
    several sizes is checked against each.
    """
    shapes: set[Shape | None] = {shape}
    for number, (operator, params) in enumerate(stages):
        need = tuple(operator.min_shape(params))
        for got in sorted(s for s in shapes if s is not None):
            if need[0] > got[0] or need[1] > got[1]:
                return number, need, got
        if number + 1 < len(stages):
            shapes = {
                operator.output_shape(params, s, copy)
                for s in shapes
                for copy in range(operator.copies(params))
            }
    return None
