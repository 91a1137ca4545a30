"""A video source's settings as a user writes them: each mistake is refused naming the field,
and a split grouping that belongs to the other kind of source is refused before any work."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from motoray.config import VIDEO_EXTENSIONS, Config, FrameSampling, SourceConfig
from motoray.spec import RequestError, parse_one_for


def refused(broadcast: dict) -> tuple[str, str]:
    """(where, message) of the one error in a config with this source."""
    with pytest.raises(ValidationError) as info:
        Config.model_validate({"sources": {"broadcast": broadcast}})
    [error] = info.value.errors()
    return ".".join(map(str, error["loc"])), error["msg"]


def video(**frames) -> dict:
    return {"uri": "race/", "kind": "video", "frames": frames}


@pytest.mark.parametrize(
    ("frames", "got"),
    [
        ({}, "none"),
        ({"start_s": 2, "end_s": 9}, "none"),  # a window is not a rule
        ({"every_s": 0.5, "fps": 2}, "every_s, fps"),
        ({"every_n": 25, "keyframes": True}, "every_n, keyframes"),
        (
            {"every_s": 1, "fps": 1, "every_n": 1, "keyframes": True},
            "every_s, fps, every_n, keyframes",
        ),
    ],
)
def test_frames_takes_exactly_one_rule(frames, got):
    assert refused(video(**frames)) == (
        "sources.broadcast.frames",
        f"Value error, frames takes exactly one of every_s, fps, every_n or keyframes, got {got}",
    )


@pytest.mark.parametrize(
    "frames", [{"every_s": 0.5}, {"fps": 2}, {"every_n": 25}, {"keyframes": True}]
)
def test_each_rule_alone_is_accepted(frames):
    config = Config.model_validate({"sources": {"broadcast": video(**frames)}})
    assert config.sources["broadcast"].frames == FrameSampling(**frames)


@pytest.mark.parametrize(("start_s", "end_s"), [(5, 5), (5, 4.5), (2.5, 1)])
def test_end_s_must_be_after_start_s(start_s, end_s):
    where, message = refused(video(every_s=0.5, start_s=start_s, end_s=end_s))
    assert where == "sources.broadcast.frames"
    assert message == f"Value error, end_s ({end_s:g}) must be after start_s ({start_s:g})"


@pytest.mark.parametrize(
    ("frames", "field"),
    [
        ({"every_s": 0}, "every_s"),
        ({"every_s": 0.0005}, "every_s"),  # finer than a millisecond: keys are whole ms
        ({"fps": 0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"every_n": 0}, "every_n"),
        ({"every_n": 2.5}, "every_n"),
        ({"keyframes": False}, "keyframes"),  # "true", or leave it out
        ({"every_s": 1, "start_s": -1}, "start_s"),
        ({"every_s": 1, "end_s": 0}, "end_s"),
        ({"every_s": 1, "range_s": 0.05}, "range_s"),
        ({"every_s": 1, "every": 2}, "every"),  # a misspelt setting is not ignored
    ],
)
def test_a_bad_value_names_its_field(frames, field):
    where, _ = refused(video(**frames))
    assert where == f"sources.broadcast.frames.{field}"


def test_a_video_source_needs_frames_and_an_image_source_takes_none():
    assert refused({"uri": "race/", "kind": "video"}) == (
        "sources.broadcast",
        "Value error, a video source needs frames, e.g. frames: {every_s: 0.5}",
    )
    assert refused({"uri": "race/", "frames": {"every_s": 0.5}}) == (
        "sources.broadcast",
        "Value error, frames is for `kind: video` sources",
    )
    assert refused({"uri": "race/", "kind": "audio"})[0] == "sources.broadcast.kind"


def test_extensions_default_to_video_containers_unless_given():
    assert SourceConfig(**video(every_s=0.5)).extensions == VIDEO_EXTENSIONS
    assert VIDEO_EXTENSIONS == [".mp4", ".mkv", ".mov", ".ts"]
    given = SourceConfig(**video(every_s=0.5), extensions=[".mxf"])
    assert given.extensions == [".mxf"]
    assert SourceConfig(uri="frames/").extensions == [".jpg", ".jpeg", ".png"]


def _split(group_by: str) -> dict:
    split = {"train_ratio": 80, "test_ratio": 20, "group_by": group_by}
    return {"name": "broadcast", "input_image_size": [64, 64], "train_test_split": split}


def _refused_request(group_by: str, source: SourceConfig) -> dict:
    """The one error of a request grouped by `group_by`, at validation (a 422 at POST)."""
    with pytest.raises(RequestError) as info:
        parse_one_for(Config(sources={"broadcast": source}), _split(group_by))
    [error] = info.value.errors
    return error


@pytest.mark.parametrize("group_by", ["video", "segment:30"])
def test_video_groupings_are_refused_on_an_image_source(group_by):
    error = _refused_request(group_by, SourceConfig(uri="frames/"))
    assert error["loc"] == ["train_test_split", "group_by"]
    assert error["msg"] == (
        f"\"{group_by}\" is for video sources (`kind: video`); 'broadcast' is a source of images"
    )


def test_image_grouping_is_refused_on_a_video_source():
    error = _refused_request("image", SourceConfig(**video(every_s=0.5)))
    assert error["loc"] == ["train_test_split", "group_by"]
    assert error["msg"].startswith(
        "\"image\" on video source 'broadcast' would put frames of one video in several splits"
    )


def test_a_video_source_takes_no_annotations():
    """Boxes are matched to image files; on a video source they crashed every job."""
    annotated = {**video(every_s=1), "annotations": {"format": "yolo", "classes": ["bike"]}}
    assert refused(annotated) == (
        "sources.broadcast",
        "Value error, annotations are for `kind: images` sources",
    )


def test_yolo_classes_are_distinct_names():
    """Boxes are matched to categories by name: [bike, bike] relabelled every box."""
    yolo = {"uri": "race/", "annotations": {"format": "yolo", "classes": ["bike", "car", "bike"]}}
    assert refused(yolo) == (
        "sources.broadcast.annotations.yolo",
        "Value error, classes must be distinct names: bike twice",
    )


@pytest.mark.parametrize(
    ("setting", "where", "message"),
    [
        ({"deinterlace": "yes"}, "deinterlace", "Input should be 'auto', 'off' or 'always'"),
        (
            {"square_pixels": "maybe"},
            "square_pixels",
            "Input should be a valid boolean, unable to interpret input",
        ),
        ({"stream": -1}, "stream", "Input should be greater than or equal to 0"),
    ],
)
def test_how_frames_are_shown_is_checked(setting, where, message):
    assert refused(video(every_s=0.5, **setting)) == (f"sources.broadcast.frames.{where}", message)


def test_frames_are_shown_as_players_show_them_by_default():
    frames = FrameSampling(every_s=0.5)
    assert (frames.deinterlace, frames.square_pixels, frames.stream) == ("auto", True, None)
