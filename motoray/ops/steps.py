"""Steps: what one entry of an augmentation object does to a stack of images.

A step is one operator, or a CHAIN of them. `apply_step` is the one loop that samples and
applies operators; the pipeline, the preview and the tests all go through it, so what they
show is what a job writes. Pure NumPy: no Ray, no storage.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

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
    step: Step, images: np.ndarray, keys: Sequence[str], seed: int
) -> Iterator[StepOutput]:
    """Every copy of `step` for a stack of same-shaped images (image i has source key
    keys[i]), depth first through a chain's stages: one branch is in memory at a time.

    Randomness comes only from (seed, key, step index, copy so far, stage), so an image's
    outputs never depend on which other images share its stack.
    """
    yield from _stages(step, images, keys, seed, 0, 0, None)


def _stages(
    step: Step,
    images: np.ndarray,
    keys: Sequence[str],
    seed: int,
    stage: int,
    path: int,
    applied: list[list[dict]] | None,
) -> Iterator[StepOutput]:
    operator, params = step.stages[stage].operator, step.stages[stage].params
    copies = operator.copies(params)
    for copy in range(copies):
        node = path * copies + copy
        # Stage 0 is seeded as a plain step always was, so its outputs do not change; a later
        # stage adds its number, and `node` (the copy index so far) tells its copies apart.
        parts = (stage,) if stage else ()
        sampled = []
        for key in keys:
            derived, rng = derive_rng(seed, key, step.index, node, *parts)
            concrete = operator.sample(params, rng, images.shape[1:3], copy)
            sampled.append({**concrete, "seed": derived} if operator.random else concrete)
        outputs = operator.kernel(images, sampled)
        so_far = [[*a, p] for a, p in zip(applied, sampled)] if applied else [[p] for p in sampled]
        if stage + 1 < len(step.stages):
            yield from _stages(step, outputs, keys, seed, stage + 1, node, so_far)
        elif step.chain:
            chains = [
                [{"operator": s.operator.name, **p} for s, p in zip(step.stages, a)] for a in so_far
            ]
            yield StepOutput(node, [{"chain": chain} for chain in chains], outputs)
        else:
            yield StepOutput(node, [a[0] for a in so_far], outputs)


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
