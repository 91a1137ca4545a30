"""What a running job tells the outside world: log lines and metrics.

Logs: one line per stage of a job (started, listed, split, sharded, finished or failed;
one per result block at DEBUG), each carrying `job_id`, `source`, `stage` and the counts
so far, as JSON (or text) to the console or to any `logging.Handler` that a factory named
in the config makes (`logging.sink: "package.module:factory"`, called with
`logging.sink_options`). The fields are attributes of the LogRecord too, for handlers that
format records themselves (`logging.format: handler`). A job the service runs also keeps
its lines, as JSON, in its folder (`GET /data_prep/{id}/logs`, `motoray logs ID`).

Metrics: Ray's metrics API, so they appear on every node's Prometheus endpoint (Ray
prefixes `ray_`, counters end in `_total`), tagged by source. They are recorded on the
driver, once per result block, from the rows the tasks return: a retried task counts once.

    motoray_images_processed   images done, failed ones included
    motoray_images_failed      images skipped (undecodable, too small, ...)
    motoray_outputs_written    output images
    motoray_bytes_written      bytes of the encoded output images
    motoray_job_duration_seconds  histogram, tagged by source and final state
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from motoray.config import LoggingConfig
from motoray.jobs.record import Counts, JobRecord

LOGGER = "motoray.job"
DURATION_BOUNDARIES_S = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200]
# Attributes every LogRecord has: anything else on a record was passed as a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_installed: tuple[str, logging.Handler] | None = None  # (config it was made from, handler)
_lock = threading.Lock()


class JobTelemetry:
    """One job's log lines and metrics."""

    def __init__(
        self,
        config: LoggingConfig,
        job_id: str,
        source: str,
        keep: Callable[[dict], None] | None = None,
    ) -> None:
        """`keep`: given every line logged (at or above the config's level) as a JSON dict."""
        self._logger = job_logger(config)
        self._fields = {"job_id": job_id, "source": source}
        self._tags = {"source": source}
        self._keep = keep

    def log(self, stage: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
        extra = {**self._fields, "stage": stage, **fields}
        self._logger.log(level, message, extra=extra)
        if self._keep is not None and self._logger.isEnabledFor(level):
            record = logging.LogRecord(LOGGER, level, "", 0, message, None, None)
            record.__dict__.update(extra)
            self._keep(json_line(record))

    def block(self, images: int, failed: int, outputs: int, nbytes: int, counts: Counts) -> None:
        """One result block: add to the counters; the running counts at DEBUG."""
        metrics = _metrics()
        for counter, value in (
            (metrics.images_processed, images),
            (metrics.images_failed, failed),
            (metrics.outputs_written, outputs),
            (metrics.bytes_written, nbytes),
        ):
            if value:  # Ray's counters take positive increments only
                counter.inc(value, tags=self._tags)
        done = f"{counts.images_done}/{counts.images_total}"
        self.log("processing", f"{done} images", logging.DEBUG, counts=_dump(counts))

    def finished(self, record: JobRecord) -> None:
        """The job's end (record: what job.json holds): its duration, and one line."""
        state, duration = record.state, record.timings.duration_s
        import ray

        if ray.is_initialized():  # a job can fail before it starts Ray
            _metrics().job_duration.observe(duration, tags={**self._tags, "state": state})
        if state == "SUCCEEDED":
            self.log("finished", f"{state} in {duration} s", counts=_dump(record.counts))
        else:
            self.log(
                "failed",
                f"{state}: {record.error}",
                logging.ERROR,
                error=record.error,
            )


def _dump(counts: Counts | None) -> dict | None:
    return counts.model_dump(exclude_none=True, by_alias=True) if counts else None


def job_logger(config: LoggingConfig) -> logging.Logger:
    """The job logger, sending to the handler `config` describes.

    The handler is made once per process and kept while the config stays the same (a
    service runs many jobs); job lines go to it alone, not also up to the root logger.
    """
    global _installed
    logger = logging.getLogger(LOGGER)
    wanted = config.model_dump_json()
    with _lock:
        if _installed is None or _installed[0] != wanted:
            handler = _handler(config)
            if _installed is not None:
                logger.removeHandler(_installed[1])
                _installed[1].close()
            _installed = (wanted, handler)
        # Again every time: logging.config.dictConfig (Ray Data calls it) can reset loggers.
        if _installed[1] not in logger.handlers:
            logger.addHandler(_installed[1])
        logger.propagate = False
        logger.setLevel(config.level)
    return logger


def _handler(config: LoggingConfig) -> logging.Handler:
    if config.sink is None:
        handler: logging.Handler = _Console()
    else:
        module, _, name = config.sink.partition(":")
        factory: Any = importlib.import_module(module)
        for part in name.split("."):
            factory = getattr(factory, part)
        handler = factory(**config.sink_options)
        if not isinstance(handler, logging.Handler):
            raise TypeError(
                f"logging sink {config.sink} returned {type(handler).__name__}, "
                "not a logging.Handler"
            )
    if config.format != "handler":  # watchtower's own formatter, for one, sends the message alone
        handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    return handler


class _Console(logging.StreamHandler):
    """stderr as it is at each line (test runners and notebooks replace sys.stderr)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the caller passed (`extra`); not what a record factory adds (Ray: _ray_...)."""
    return {
        k: v
        for k, v in vars(record).items()
        if k not in _RECORD_ATTRIBUTES and not k.startswith("_")
    }


def _time(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def json_line(record: logging.LogRecord) -> dict[str, Any]:
    """time, level, logger, message, then the record's fields."""
    return {
        "time": _time(record),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
        **_fields(record),
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `json_line`, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = json_line(record)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL message key=value ...`, values that are not text as JSON."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v, default=str)}"
            for k, v in _fields(record).items()
        )
        text = f"{_time(record)} {record.levelname} {record.getMessage()} {fields}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


@dataclass(frozen=True)
class _Metrics:
    images_processed: Any
    images_failed: Any
    outputs_written: Any
    bytes_written: Any
    job_duration: Any


@cache
def _metrics() -> _Metrics:
    """Made on first use, in a process where Ray is initialised (once per process)."""
    from ray.util.metrics import Counter, Histogram

    def counter(name: str, description: str) -> Counter:
        return Counter(f"motoray_{name}", description, tag_keys=("source",))

    return _Metrics(
        images_processed=counter("images_processed", "Source images done, failed ones included"),
        images_failed=counter("images_failed", "Source images skipped and recorded as failed"),
        outputs_written=counter("outputs_written", "Output images written"),
        bytes_written=counter("bytes_written", "Bytes of the encoded output images written"),
        job_duration=Histogram(
            "motoray_job_duration_seconds",
            "Duration of a job, from start to job.json",
            boundaries=DURATION_BOUNDARIES_S,
            tag_keys=("source", "state"),
        ),
    )
