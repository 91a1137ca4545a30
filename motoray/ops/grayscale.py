"""GRAYSCALE: ITU-R 601 luma (as Pillow's convert("L")), kept in 3 channels."""

from __future__ import annotations

from motoray.ops.boxes import keep_boxes
from motoray.ops.functional import grayscale
from motoray.ops.registry import Operator, Params


class GrayscaleParams(Params):
    """No parameters: {"GRAYSCALE": {}}."""


OPERATOR = Operator(
    name="GRAYSCALE",
    params=GrayscaleParams,
    kernel=grayscale,
    box_kernel=keep_boxes,
    description="Grayscale (ITU-R 601 luma, as Pillow's 'L'), written as a 3-channel image.",
)
