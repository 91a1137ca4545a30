"""The parts of a request that do not depend on the enabled operators: the split, box
sanitising and output options."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from motoray.regex import compile_user_regex

Ratio = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
MAX_GROUP_BY_LENGTH = 300  # a regex runs on every key: keep patterns short
MAX_BOX_AREA = 2**32  # pixels: bigger than any output
VIDEO_GROUPINGS = ("video", "segment:")  # group_by values that only a video source has


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DEFAULT_MAX_DISTANCE = 6  # bits of 64: re-encodes, rescales, overlays; not another shot
# Past 12 bits, distinct shots of one scene merge, and candidates (hashes sharing one of the
# max_distance + 1 bands) grow as 2^(64 / (max_distance + 1)) fewer values per band.
MAX_DISTANCE = 12


class NearDuplicates(StrictModel):
    """Images whose perceptual hashes are this close share a split (and, with dedupe, one
    of them is kept)."""

    max_distance: int = Field(
        DEFAULT_MAX_DISTANCE,
        strict=True,
        ge=0,
        le=MAX_DISTANCE,
        description="images whose 64-bit perceptual hashes differ in at most this many bits "
        f"are near-duplicates (0 to {MAX_DISTANCE}; {DEFAULT_MAX_DISTANCE} finds re-encoded, "
        "rescaled and overlaid copies and keeps distinct shots apart)",
    )
    dedupe: bool = Field(
        False,
        strict=True,
        description="keep one image per cluster of near-duplicates: the one with the most "
        "pixels, ties to the smallest key; the manifest lists each dropped image with "
        "`duplicate_of` (image sources only)",
    )


class TrainTestSplit(StrictModel):
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
    near_duplicates: NearDuplicates | None = Field(
        None,
        exclude_if=lambda value: value is None,  # requests without it dump as they did
        description="also keep near-duplicate images (replays, re-encodes, re-exports) in "
        "one split, whatever their names: groups holding them are merged",
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


class BoxOptions(StrictModel):
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


class OutputOptions(StrictModel):
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
