"""POST /data_prep -> the warm runner -> the same dataset as the core pipeline; status, log
lines, stop, catalog.

What reaches a job runs on the live service; the rest (400, 404 of an id no job can have,
the catalog, the OpenAPI document) on the app in process."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from motoray.config import load_config
from motoray.pipeline.layout import JOB_FILE, MANIFEST_FILE
from motoray.pipeline.manifest import MANIFEST_COLUMNS
from motoray.priority import BATCH_NICENESS, DRIVER_NICENESS
from motoray.waiting import wait_until
from tests.api.conftest import FRAMES, TERMINAL, motoray_bin, post_json, ray_job_ids, wait_for
from tests.conftest import EXAMPLES, full_hd_jitter, outputs_in_memory

SEED_FILE = EXAMPLES / "seed_sample.json"


@pytest.fixture(scope="module")
def seed_job(service) -> dict:
    """The seed sample POSTed as its file's bytes, followed to the end."""
    with service.client() as api:
        response = post_json(api, SEED_FILE.read_bytes())
        assert response.status_code == 202, response.text
        [job] = response.json()["jobs"]
        return {"link": job, "final": wait_for(api, job["job_id"])}


def test_seed_sample_succeeds_with_the_core_results(seed_job, service):
    link, final = seed_job["link"], seed_job["final"]
    assert link["status_url"] == f"{service.url}/data_prep/{link['job_id']}"
    assert final["state"] == "SUCCEEDED", final
    assert final["error"] is None
    train = round(FRAMES * 0.8)
    # 1 CROP + 3 RANDOM_CROP outputs per image
    assert final["progress"] == {
        "images_total": FRAMES,
        "images_done": FRAMES,
        "images_failed": 0,
        "outputs": 4 * FRAMES,
    }
    assert final["summary"]["counts"]["splits"] == {
        "test": {"images": FRAMES - train, "outputs": 4 * (FRAMES - train)},
        "train": {"images": train, "outputs": 4 * train},
    }
    served = Path(final["output"])
    assert json.loads((served / JOB_FILE).read_text())["state"] == "SUCCEEDED"

    # The same request through the job's own worker, in this process: byte for byte the same.
    config = load_config(service.config_path)
    rows, data = outputs_in_memory(config, json.loads(SEED_FILE.read_bytes())[0])
    served_manifest = pq.read_table(served / MANIFEST_FILE)
    assert served_manifest.to_pylist() == [{c: row[c] for c in MANIFEST_COLUMNS} for row in rows]
    assert len(data) == 4 * FRAMES
    for path, expected in data.items():
        assert (served / path).read_bytes() == expected, path


def test_the_job_is_seen_running_then_done(service, api, long_source):
    """What a client polling the status sees: RUNNING (with a start time, no end yet),
    then SUCCEEDED, never anything in between or after. On a source long enough to be seen
    running: the seed sample's 6 frames may take less than one poll on a busy machine."""
    seen: list[str] = []
    started = time.monotonic()
    with service.motogp_from(long_source):
        [job] = post_json(api, SEED_FILE.read_bytes()).json()["jobs"]
    running = wait_for(api, job["job_id"], ("RUNNING", *TERMINAL), poll_s=0.05, seen=seen)
    print(f"\nPOST -> {running['state']}: {time.monotonic() - started:.2f} s")  # in the log
    final = wait_for(api, job["job_id"], seen=seen)
    assert seen[-2:] == ["RUNNING", "SUCCEEDED"], seen
    assert set(seen[:-2]) <= {"PENDING"}, seen
    assert running["state"] == "RUNNING" and running["summary"] is None
    assert running["submitted_at"] and running["finished_at"] is None
    assert final["submitted_at"] == running["submitted_at"]
    assert final["finished_at"] > final["submitted_at"]


def test_a_get_with_wait_s_answers_when_the_job_ends(service, api, long_source):
    """One request instead of polling: GET ?wait_s= answers once the job has ended (not
    `wait_s` later), or after `wait_s` with the job still running, never earlier."""
    wait_s = 60
    with service.motogp_from(long_source):
        [job] = post_json(api, SEED_FILE.read_bytes()).json()["jobs"]
    answers: list[tuple[str, float]] = []
    while not answers or answers[-1][0] not in TERMINAL:
        start = time.monotonic()
        response = api.get(f"/data_prep/{job['job_id']}", params={"wait_s": wait_s}, timeout=90)
        assert response.status_code == 200, response.text
        answers.append((response.json()["state"], time.monotonic() - start))
    assert answers[-1][0] == "SUCCEEDED", answers
    assert answers[-1][1] < wait_s, answers  # the end, not the time limit, answered it
    assert all(took >= wait_s for _, took in answers[:-1]), answers


def test_wait_s_is_bounded(app_api):
    for wait_s in (-1, 61, "forever", "nan", "inf", "1e309"):
        response = app_api.get("/data_prep/some-job", params={"wait_s": wait_s})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == ["query", "wait_s"]


def test_seed_text_verbatim_is_400_saying_where(app_api):
    body = (EXAMPLES / "seed_sample_verbatim.txt").read_bytes()
    response = post_json(app_api, body)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["loc"] == []
    assert "line 1 column" in error["msg"] and "delimiter" in error["msg"]


def test_a_list_body_is_one_job_per_element(api):
    seed = json.loads(SEED_FILE.read_text())[0]
    augment_only = json.loads((EXAMPLES / "augment_only.json").read_text())[0]
    response = post_json(api, [seed, augment_only])
    assert response.status_code == 202, response.text
    jobs = response.json()["jobs"]
    base = jobs[0]["job_id"].rsplit("-", 1)[0]
    assert [job["job_id"] for job in jobs] == [f"{base}-0", f"{base}-1"]
    finals = [wait_for(api, job["job_id"]) for job in jobs]
    assert [f["state"] for f in finals] == ["SUCCEEDED", "SUCCEEDED"]
    assert finals[1]["progress"]["outputs"] == 5 * FRAMES  # RANDOM_CROP target_count 5


def test_delete_stops_a_job_and_leaves_no_job_json(service, api, long_source):
    with service.motogp_from(long_source):
        response = post_json(api, json.loads(SEED_FILE.read_text()))
    [job] = response.json()["jobs"]
    wait_for(api, job["job_id"], states=("RUNNING",), poll_s=0.05)  # its driver started
    stopped = api.delete(f"/data_prep/{job['job_id']}")
    assert stopped.status_code == 200, stopped.text
    # It answers once the job has stopped, or after 15 s with the state it is in: the run
    # stops at its next result block, which a busy machine can take longer to make.
    assert stopped.json()["state"] in ("STOPPED", "RUNNING")
    assert wait_for(api, job["job_id"], states=TERMINAL)["state"] == "STOPPED"
    # Once its run has logged its end it writes nothing more: then no job.json.
    wait_until(
        lambda: "stopped" in stages(api, job["job_id"]), 60, what=f"{job['job_id']}'s run to end"
    )
    assert not (Path(stopped.json()["output"]) / JOB_FILE).exists()
    assert api.get(f"/data_prep/{job['job_id']}").json()["state"] == "STOPPED"
    again = api.delete(f"/data_prep/{job['job_id']}")  # idempotent
    assert (again.status_code, again.json()["state"]) == (200, "STOPPED")


def test_delete_stops_the_work_of_a_job_already_in_its_tasks(service, api):
    """6 frames that each make 300 full-HD outputs: tens of seconds of work, all of it
    already in the job's tasks (a small job's plain tasks) when it is stopped. Its tasks
    stop too: the job is STOPPED within seconds, and nothing is written after that."""
    [job] = post_json(api, full_hd_jitter(300)).json()["jobs"]
    running = wait_for(api, job["job_id"], states=("RUNNING",), poll_s=0.05)
    folder = Path(running["output"])
    wait_until(lambda: any(folder.rglob("*.jpg")), 60, what="a first output")
    asked = time.monotonic()
    stopped = api.delete(f"/data_prep/{job['job_id']}")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "STOPPED", stopped.text
    took = time.monotonic() - asked
    print(f"\nDELETE -> STOPPED: {took:.2f} s")  # in the log
    assert took < 10  # the outputs alone would take 30 s and more
    written = set(folder.rglob("*.jpg"))
    assert 0 < len(written) < 6 * 300
    time.sleep(2)  # longer than a task takes to look again
    assert set(folder.rglob("*.jpg")) == written


def test_the_api_outranks_the_pipeline_for_the_cpu(service, api, long_source):
    """Ray would start every worker at niceness 15, the API's replica and proxy among them.
    The service's Ray starts workers at 0: the API's processes stay there, the job's driver
    (in the runner) runs below them, its tasks lower still. A POST starts no process of its
    own: no Ray Job (no supervisor, no entrypoint), no driver; the job is no Ray Job."""
    with service.motogp_from(long_source):
        [job] = post_json(api, json.loads(SEED_FILE.read_text())).json()["jobs"]

    def processes(text: str) -> dict[psutil.Process, int]:  # each with its niceness
        found = {}
        for pid in service.processes_with(text):
            with contextlib.suppress(psutil.Error):  # ended since
                process = psutil.Process(pid)
                if process.name() != "sh":  # the shell Ray runs an entrypoint in
                    found[process] = process.nice()
        return found

    def niceness(text: str) -> set[int]:
        return set(processes(text).values())

    # A task lowers itself as it starts: wait for that, not for its process title.
    batch = {BATCH_NICENESS}
    wait_until(lambda: niceness("_write_files") == batch, 60, what="a task at batch priority")
    assert niceness("ServeReplica:motoray") == niceness("ProxyActor") == {0}
    assert niceness("JobBoard") == {0}
    assert niceness("JobRunner") == {DRIVER_NICENESS}
    assert processes("JobSupervisor") == {} and processes(job["job_id"]) == {}
    assert job["job_id"] not in ray_job_ids(service.ray)
    # Seen: stop it if it still runs (a fast machine may have finished it: 409).
    assert api.delete(f"/data_prep/{job['job_id']}").status_code in (200, 409)


def stages(api, job_id: str) -> list[str]:
    response = api.get(f"/data_prep/{job_id}/logs")
    assert response.status_code == 200, response.text
    return [line["stage"] for line in response.json()["lines"]]


def test_a_jobs_log_lines_over_http_and_on_the_command_line(seed_job, service, api):
    """motoray's structured lines of the job, each with its id: over HTTP and from
    `motoray logs ID` (which reads them where the service keeps them, by the config)."""
    job_id = seed_job["link"]["job_id"]
    lines = api.get(f"/data_prep/{job_id}/logs").json()["lines"]
    assert [line["stage"] for line in lines] == ["started", "listed", "split", "finished"]
    assert {line["job_id"] for line in lines} == {job_id}
    assert lines[-1]["message"].startswith("SUCCEEDED in ")
    assert lines[1]["images"] == FRAMES
    done = subprocess.run(
        [motoray_bin(), "logs", job_id, "--config", str(service.config_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [line.split(" ")[1:3] for line in done.stdout.splitlines()] == [
        ["INFO", "job"],
        ["INFO", str(FRAMES)],
        ["INFO", "images"],
        ["INFO", "SUCCEEDED"],
    ]
    assert f"job_id={job_id}" in done.stdout
    unknown = subprocess.run(
        [motoray_bin(), "logs", "nope", "--config", str(service.config_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unknown.returncode == 2 and "no job 'nope'" in unknown.stderr


def test_delete_of_a_finished_job_is_409(seed_job, api):
    response = api.delete(f"/data_prep/{seed_job['link']['job_id']}")
    assert response.status_code == 409
    assert "SUCCEEDED" in response.json()["error"]


@pytest.mark.parametrize("job_id", ["20990101-000000-abcdef", "nope", "a..b"])
def test_unknown_job_is_404(api, job_id):
    """Ids a job could have: the service asks the board, then the output root's folders;
    neither knows them."""
    for method in ("GET", "DELETE"):
        response = api.request(method, f"/data_prep/{job_id}")
        assert response.status_code == 404, (method, job_id, response.text)
        assert response.json()["error"].startswith("unknown job")
    assert api.get(f"/data_prep/{job_id}/logs").status_code == 404
    start = time.monotonic()
    response = api.get(f"/data_prep/{job_id}", params={"wait_s": 30}, timeout=60)
    assert response.status_code == 404 and time.monotonic() - start < 30  # no job to wait for


# "...%0A": a job's id and a newline, which a regex ending in `$` let through.
@pytest.mark.parametrize(
    "job_id", ["a" * 300, "%00", "-leading-dash", "a b", "20990101-000000-abcdef%0A"]
)
def test_an_id_no_job_can_have_is_404_without_asking_ray(app_api, job_id):
    for method in ("GET", "DELETE"):
        response = app_api.request(method, f"/data_prep/{job_id}")
        assert response.status_code == 404, (method, job_id, response.text)
        error = response.json()["error"]
        assert error.startswith("unknown job") and len(error) < 200  # the id is clipped


def test_too_many_pending_jobs_is_429_with_retry_after(service, api, long_source):
    seed = json.loads(SEED_FILE.read_text())[0]

    def at_most_one(config: dict) -> None:
        config["server"]["max_pending_jobs"] = 1

    # The long source: the seed's 6 frames can end before the second POST, freeing the slot.
    with service.edited_config(at_most_one), service.motogp_from(long_source):
        first = post_json(api, seed)
        assert first.status_code == 202, first.text
        [job] = first.json()["jobs"]
        try:
            refused = post_json(api, seed)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["Retry-After"]) > 0
            assert "limit 1" in refused.json()["error"]
            # A body that could never fit is not "busy, retry later": it is a bad request.
            never = post_json(api, [seed, seed])
            assert never.status_code == 422, never.text
            assert never.json()["errors"] == [
                {"loc": [], "msg": "2 requests in one body; at most 1"}
            ]
        finally:
            api.delete(f"/data_prep/{job['job_id']}")


def test_catalog(app_api):
    sources = app_api.get("/data_sources").json()["sources"]
    assert [s["name"] for s in sources] == ["MotoGP"]
    operators = {op["name"]: op for op in app_api.get("/operators").json()["operators"]}
    assert {"CROP", "RANDOM_CROP"} <= set(operators)
    crop = operators["CROP"]["parameters"]
    assert "crop_dimensions" in crop["properties"] and "crop_type" in crop["properties"]
    assert operators["RANDOM_CROP"]["description"]
    assert app_api.get("/healthz").json()["status"] == "ok"


def test_docs_and_openapi(app):
    with app.client(token=None) as anonymous:
        assert anonymous.get("/docs").status_code == 200
        schema = anonymous.get("/openapi.json").json()
    body = schema["paths"]["/data_prep"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["anyOf"][0] == {"$ref": "#/components/schemas/DataPrepRequest"}
    assert "RANDOM_CROP" in json.dumps(schema["components"]["schemas"]["Augmentation"])
    assert schema["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
