"""Job log lines: JSON (or text) with job id, source, stage and counts, to a configured sink.

The sink is this module's `collect`, named in the config as "tests.test_logging:collect",
exactly as a deployment names watchtower's CloudWatchLogHandler.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from motoray.config import LoggingConfig, load_config
from motoray.observability import JobTelemetry, job_logger
from tests.conftest import copy_frames, run_job
from tests.s3server import S3Endpoint, s3_endpoint  # noqa: F401  (fixture: moto serves logs too)

SINK = "tests.test_logging:collect"
LINES: list[tuple[logging.LogRecord, str]] = []  # (record, formatted line), as the sink got them


class _Collect(logging.Handler):
    def __init__(self, **options) -> None:
        super().__init__()
        self.options = options

    def emit(self, record: logging.LogRecord) -> None:
        LINES.append((record, self.format(record)))


def collect(**options) -> logging.Handler:
    """A sink factory: called with the config's sink_options, returns a logging.Handler."""
    return _Collect(**options)


def formatted(**options) -> logging.Handler:
    """A sink with a formatter of its own, kept by `format: handler`."""
    handler = _Collect(**options)
    handler.setFormatter(logging.Formatter("%(stage)s|%(job_id)s|%(message)s"))
    return handler


def _lines(job_id: str) -> list[dict]:
    return [json.loads(text) for record, text in LINES if getattr(record, "job_id", "") == job_id]


@pytest.fixture
def small_source(frames, tmp_path) -> Path:
    folder = tmp_path / "small"
    copy_frames(frames, folder, 5)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.mark.usefixtures("ray_local")
def test_the_configured_sink_gets_json_lines_of_a_real_job(small_source, make_config):
    config = make_config(MotoGP=small_source)
    config.logging = LoggingConfig(sink=SINK, sink_options={"stream": "jobs"}, level="DEBUG")
    body = {"name": "MotoGP", "input_image_size": [64, 36], "augmentations": [{"FLIP": {}}]}
    record = run_job(body, config, "logged")

    lines = _lines("logged")
    stages = [line["stage"] for line in lines]
    assert stages[:3] == ["started", "listed", "split"]
    assert set(stages[3:-1]) == {"processing"} and stages[-1] == "finished"
    for line in lines:
        assert line["job_id"] == "logged" and line["source"] == "MotoGP"
        assert line["logger"] == "motoray.job" and line["time"].endswith("Z")
    assert lines[1]["images"] == 6
    assert lines[2]["splits"] == {"all": 6}
    assert lines[-2]["counts"]["images_done"] == 6  # the last block's running counts
    assert lines[-1]["level"] == "INFO"
    assert lines[-1]["counts"] == record["counts"]
    assert lines[-1]["counts"]["images_failed"] == 1 and lines[-1]["counts"]["outputs"] == 5

    # (pytest adds its own capture handler to loggers that do not propagate)
    [handler] = [h for h in logging.getLogger("motoray.job").handlers if type(h) is _Collect]
    assert handler.options == {"stream": "jobs"}
    # Fields are record attributes too, for handlers that ship records whole (Elasticsearch).
    finished = next(r for r, _ in LINES if getattr(r, "stage", "") == "finished")
    assert finished.counts == record["counts"] and finished.source == "MotoGP"


def test_a_failed_job_logs_its_error(make_config, tmp_path):
    config = make_config(MotoGP=tmp_path / "nowhere")
    config.logging = LoggingConfig(sink=SINK)
    with pytest.raises(FileNotFoundError):
        run_job({"name": "MotoGP"}, config, "failing")
    lines = _lines("failing")
    assert [line["stage"] for line in lines] == ["started", "failed"]
    assert lines[-1]["level"] == "ERROR" and "does not exist" in lines[-1]["error"]


def test_a_sink_that_cannot_be_made_fails_the_job_with_job_json(make_config, frames):
    config = make_config(MotoGP=frames)
    config.logging = LoggingConfig(sink="tests.test_logging:no_such_factory")
    with pytest.raises(AttributeError):
        run_job({"name": "MotoGP"}, config, "bad-sink")
    job_json = Path(config.output.uri) / "MotoGP" / "bad-sink" / "job.json"
    assert json.loads(job_json.read_text())["state"] == "FAILED"


def test_text_lines_on_the_console_by_default(capsys):
    JobTelemetry(LoggingConfig(format="text"), "j1", "soccer").log(
        "listed", "3 images", images=3, splits={"train": 2}
    )
    line = capsys.readouterr().err.strip()
    assert line.endswith(
        ' INFO 3 images job_id=j1 source=soccer stage=listed images=3 splits={"train": 2}'
    )
    JobTelemetry(LoggingConfig(), "j2", "soccer").log("split", "done", level=logging.DEBUG)
    assert capsys.readouterr().err == ""  # INFO by default
    JobTelemetry(LoggingConfig(), "j2", "soccer").log("split", "done")
    assert json.loads(capsys.readouterr().err)["stage"] == "split"


def test_format_handler_keeps_the_sinks_own_formatter():
    config = LoggingConfig(sink="tests.test_logging:formatted", format="handler")
    JobTelemetry(config, "j3", "soccer").log("listed", "3 images")
    assert LINES[-1][1] == "listed|j3|3 images"
    JobTelemetry(config.model_copy(update={"format": "json"}), "j3", "soccer").log("split", "ok")
    assert json.loads(LINES[-1][1])["message"] == "ok"


def test_the_logging_section_of_motoray_yaml(tmp_path):
    path = tmp_path / "motoray.yaml"
    section = {"format": "text", "level": "WARNING", "sink": "watchtower:CloudWatchLogHandler"}
    path.write_text(yaml.safe_dump({"logging": {**section, "sink_options": {"a": 1}}}))
    assert load_config(path).logging == LoggingConfig(**section, sink_options={"a": 1})
    path.write_text(yaml.safe_dump({"logging": {"sink": "watchtower.CloudWatchLogHandler"}}))
    with pytest.raises(ValueError, match="sink"):
        load_config(path)


CLOUDWATCH_CONFIG = """
logging:
  format: json
  sink: "watchtower:CloudWatchLogHandler"
  sink_options:
    log_group_name: motoray-jobs
    log_stream_name: "{machine_name}/{logger_name}"
"""


def test_cloudwatch_through_watchtower_is_config_only(
    s3_endpoint: S3Endpoint,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    pytest.importorskip("watchtower")
    # boto3's own variable for a CloudWatch Logs endpoint: here moto, on AWS nothing at all.
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", s3_endpoint.endpoint_url)
    path = tmp_path / "motoray.yaml"
    path.write_text(CLOUDWATCH_CONFIG)
    try:
        telemetry = JobTelemetry(load_config(path).logging, "cw-1", "MotoGP")
        telemetry.log("listed", "12 images", images=12)
        for handler in logging.getLogger("motoray.job").handlers:
            handler.flush()
        logs = s3_endpoint.client("logs")
        [stream] = logs.describe_log_streams(logGroupName="motoray-jobs")["logStreams"]
        events = logs.get_log_events(
            logGroupName="motoray-jobs", logStreamName=stream["logStreamName"]
        )["events"]
        [line] = [json.loads(event["message"]) for event in events]
        assert line["job_id"] == "cw-1" and line["stage"] == "listed" and line["images"] == 12
    finally:
        job_logger(LoggingConfig(sink=SINK))  # closes watchtower's handler while moto still runs
