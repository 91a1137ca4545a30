"""Video fixtures: real clips encoded by PyAV (x264) with a frame counter in their pixels;
moto S3 behind a recorder of every GET."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from motoray.config import Config, OutputConfig, SourceConfig
from motoray.imageio import load_image
from motoray.video.sample import frame_counter, write_sample_videos
from tests.s3server import S3Endpoint, s3_endpoint  # noqa: F401  (fixture)

FPS = 25
SECONDS = 10
SIZE = (320, 180)
SMALL = [160, 90]  # input_image_size of most requests here


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> Path:
    """Three 10 s 25 fps clips: clip000.mp4, clip001.mp4, clip002.mp4."""
    folder = tmp_path_factory.mktemp("broadcast")
    write_sample_videos(folder, 3, SIZE, seconds=SECONDS, fps=FPS)
    return folder


def video_config(uri: Path | str, output: Path, name: str = "broadcast", **frames) -> Config:
    frames = frames or {"every_s": 0.5}
    source = SourceConfig(uri=str(uri), kind="video", frames=frames)
    return Config(sources={name: source}, output=OutputConfig(uri=str(output)))


def request(name: str = "broadcast", **fields) -> dict:
    return {"name": name, "input_image_size": SMALL, **fields}


def shown_ms(jpeg: bytes, fps: int = FPS) -> int:
    """The time of the frame an output shows, read back from its pixels (constant rate)."""
    return frame_counter(load_image(jpeg)) * 1000 // fps


class RecordedGets:
    """WSGI middleware: (path, Range header, bytes sent) of every GET."""

    def __init__(self, app) -> None:
        self.app, self.gets, self.lock = app, [], threading.Lock()

    def __call__(self, environ, start_response):
        body = list(self.app(environ, start_response))
        if environ["REQUEST_METHOD"] == "GET":
            with self.lock:
                self.gets.append(
                    (environ["PATH_INFO"], environ.get("HTTP_RANGE"), sum(map(len, body)))
                )
        return body


@pytest.fixture
def recording_s3(s3_endpoint) -> Iterator[tuple[S3Endpoint, RecordedGets]]:  # noqa: F811
    """moto (sharing the session server's backend and credentials) behind the recorder."""
    recorder = RecordedGets(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        "127.0.0.1", 0, recorder, threaded=True, request_handler=MotoRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield S3Endpoint(f"http://127.0.0.1:{server.server_port}", s3_endpoint.env), recorder
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
