"""Typed dependencies of the routes: the current config, its operators, the job service."""

from __future__ import annotations

import logging
import os
import threading
from typing import Annotated

from fastapi import Depends, Request

from motoray.config import Config, load_config
from motoray.jobs.service import JobService
from motoray.ops import Operator, operators_for

log = logging.getLogger("motoray.api")


class ConfigFile:
    """The config, read again whenever the file changes.

    A new source or an enabled operator takes effect on the next request, with
    no redeploy. A file that does not load (say, half-written) keeps the last
    good config in use, so a typo never takes the service down.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._config = load_config(path)  # the first load must succeed

    def get(self) -> Config:
        try:
            stat = os.stat(self.path)
        except OSError as e:
            log.warning("config %s unreadable, keeping the last good one: %s", self.path, e)
            return self._config
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._config = load_config(self.path)
                except Exception as e:
                    log.warning("config %s invalid, keeping the last good one: %s", self.path, e)
                self._stamp = stamp
            return self._config


def get_config(request: Request) -> Config:
    return request.app.state.config_file.get()


ConfigDep = Annotated[Config, Depends(get_config)]


def get_operators(config: ConfigDep) -> dict[str, Operator]:
    return operators_for(config.operators)


OperatorsDep = Annotated[dict[str, Operator], Depends(get_operators)]


def get_jobs(request: Request) -> JobService:
    return request.app.state.jobs


JobsDep = Annotated[JobService, Depends(get_jobs)]
