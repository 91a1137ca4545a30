"""Class labels of source images, from the source's `labels` rule in the config.

`labels: folder` follows torchvision's ImageFolder layout: an image's class is the folder
directly under the source root, so `cat/001.jpg` and `cat/video7/001.jpg` are both `cat`
(and `video7` can still be the split group). An image at the root itself has no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

LabelRule = Literal["folder"] | None


def label_of(key: str, rule: LabelRule) -> str | None:
    if rule == "folder":
        folder, _, rest = key.partition("/")
        return folder if rest else None
    return None


def labels_of(keys: Sequence[str], rule: LabelRule) -> dict[str, str | None] | None:
    """key -> label, or None when the source is not labelled at all."""
    if rule is None:
        return None
    return {key: label_of(key, rule) for key in keys}
