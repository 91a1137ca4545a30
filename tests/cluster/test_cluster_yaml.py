"""cluster.yaml against Ray's own cluster schema and botocore's EC2 RunInstances model.

Everything here is offline: Ray's `prepare_config` only merges the AWS defaults file;
the AWS-touching part of `ray up` (bootstrap_aws: IAM, key pairs, subnet lookups) is not
called, so the IDs marked REPLACE_ME are checked for shape, not for existence.

The start commands run for real in bash, in the environment the containers get from
`docker.run_options`, with stand-ins for `ray` and `motoray` that log their arguments and
environment, and the API token's SSM parameter in moto on 127.0.0.1.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import botocore.session
import jsonschema
import pytest
import ray
import yaml
from botocore.model import Shape
from botocore.validate import ParamValidator
from ray.autoscaler._private.aws.config import DEFAULT_AMI
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.autoscaler.tags import TAG_RAY_CLUSTER_NAME
from ray.scripts.scripts import start as ray_start_command

from motoray.waiting import wait_until
from tests.s3server import FAKE_AWS_ENV, S3Endpoint, moto_http_server

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"
CONTAINER_HOME = "/home/ray"  # HOME in the rayproject/ray image (the Dockerfile's too)
API_TOKEN_PARAMETER = "/motoray/api-token"
RUN_INSTANCES = (
    botocore.session.get_session()
    .get_service_model("ec2")
    .operation_model("RunInstances")
    .input_shape
)


@pytest.fixture
def cfg() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_validate(cfg: dict[str, Any]) -> dict[str, Any]:
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def run_instances_params(cfg: dict[str, Any], node_type: str) -> dict[str, Any]:
    """The RunInstances call Ray's AWS node provider makes for one node of this type."""
    params = copy.deepcopy(cfg["available_node_types"][node_type]["node_config"])
    params.setdefault("ImageId", DEFAULT_AMI[cfg["provider"]["region"]])  # as bootstrap_aws does
    subnet_ids = params.pop("SubnetIds")  # Ray's own key: it launches into one of them
    tags = [{"Key": TAG_RAY_CLUSTER_NAME, "Value": cfg["cluster_name"]}]
    params.update(
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet_ids[0],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    return params


def enum_errors(value: Any, shape: Shape, path: str = "") -> list[str]:
    """Values outside the model's enums, which botocore's ParamValidator does not check."""
    if shape.type_name == "structure" and isinstance(value, dict):
        return [
            err
            for key, item in value.items()
            if key in shape.members
            for err in enum_errors(item, shape.members[key], f"{path}.{key}")
        ]
    if shape.type_name == "list" and isinstance(value, list):
        return [
            err for i, item in enumerate(value) for err in enum_errors(item, shape.member, path)
        ]
    enum = getattr(shape, "enum", None)
    return [f"{path}: {value!r} not in {enum}"] if enum and value not in enum else []


def ec2_errors(params: dict[str, Any]) -> str:
    report = ParamValidator().validate(params, RUN_INSTANCES)
    return "\n".join(filter(None, [report.generate_report(), *enum_errors(params, RUN_INSTANCES)]))


def test_ray_schema_accepts_cluster_yaml(cfg: dict[str, Any]) -> None:
    prepared = ray_validate(cfg)
    assert prepared["cluster_name"] == "motoray"
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("node_type", ["head", "ondemand_worker", "spot_worker"])
def test_node_config_is_a_valid_run_instances_call(cfg: dict[str, Any], node_type: str) -> None:
    assert ec2_errors(run_instances_params(cfg, node_type)) == ""


def test_security_properties(cfg: dict[str, Any]) -> None:
    assert cfg["provider"]["use_internal_ips"] is True
    assert cfg["provider"]["cache_stopped_nodes"] is False
    for name, node_type in cfg["available_node_types"].items():
        conf = node_type["node_config"]
        assert conf["SubnetIds"] and all(s.startswith("subnet-") for s in conf["SubnetIds"])
        assert conf["SecurityGroupIds"] and all(
            s.startswith("sg-") for s in conf["SecurityGroupIds"]
        )
        assert conf["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::"), name
        assert conf["MetadataOptions"]["HttpTokens"] == "required", name  # IMDSv2 only
        assert "NetworkInterfaces" not in conf, name  # would bypass the subnet/SG settings
        disks = conf["BlockDeviceMappings"]
        assert disks, name
        for disk in disks:
            assert disk["Ebs"]["Encrypted"] is True, name
            assert disk["Ebs"]["KmsKeyId"].startswith("arn:aws:kms:"), name


def test_node_types_and_custom_resources(cfg: dict[str, Any]) -> None:
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"]["CPU"] == 0  # no pipeline work on the head
    assert "InstanceMarketOptions" not in head["node_config"]

    ondemand = types["ondemand_worker"]
    assert ondemand["min_workers"] >= 1
    assert ondemand["resources"]["ondemand"] >= 1
    assert "InstanceMarketOptions" not in ondemand["node_config"]

    spot = types["spot_worker"]
    assert spot["min_workers"] == 0
    assert spot["max_workers"] > ondemand["max_workers"]
    assert spot["resources"]["spot"] >= 1
    assert spot["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"

    spot_only = [n for n, t in types.items() if "spot" in t["resources"]]
    market = [n for n, t in types.items() if "InstanceMarketOptions" in t["node_config"]]
    assert spot_only == market == ["spot_worker"]
    assert not any("ondemand" in types[n]["resources"] for n in market)


def test_docker_image_matches_installed_ray_and_the_container(cfg: dict[str, Any]) -> None:
    """The cluster runs the Dockerfile's image: one pinned Python, whatever runs the tests."""
    [base] = [ln.split()[1] for ln in (ROOT / "Dockerfile").read_text().splitlines()
              if ln.startswith("FROM ")]  # fmt: skip
    assert cfg["docker"]["image"] == base
    assert base.startswith(f"rayproject/ray:{ray.__version__}-py3") and base.endswith("-cpu")


def test_commands_install_motoray_and_start_its_services(cfg: dict[str, Any]) -> None:
    prepared = ray_validate(cfg)
    assert prepared["file_mounts"]["~/motoray"] == "."
    install = "cd ~/motoray && pip install --no-cache-dir ."
    assert install in prepared["head_setup_commands"]
    assert install in prepared["worker_setup_commands"]  # the on-demand workers

    head_start = " ; ".join(prepared["head_start_ray_commands"])
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    assert "motoray serve --config" in head_start and "--port 5000" in head_start

    spot_setup = prepared["available_node_types"]["spot_worker"]["worker_setup_commands"]
    assert spot_setup[0] == install  # per-type commands replace the global ones
    assert "python -m motoray.cluster.spot_watcher" in spot_setup[1]
    assert importlib.util.find_spec("motoray.cluster.spot_watcher") is not None
    others = [t for n, t in prepared["available_node_types"].items() if n != "spot_worker"]
    assert not any("spot_watcher" in " ".join(t.get("worker_setup_commands", [])) for t in others)


# Ray token auth and the API token: the start commands run in bash, as in a container.

STUB = """#!/usr/bin/env bash
name="$(basename "$0")-$1"
env > "$STUB_DIR/$name.env"
echo "$$" > "$STUB_DIR/$name.pid"
printf '%s\\n' "$@" > "$STUB_DIR/$name.args"
"""


def container_env(cfg: dict[str, Any], kind: str) -> dict[str, str]:
    """The variables `docker run` gives a head or worker container (run_options -e/--env)."""
    options = cfg["docker"].get("run_options", []) + cfg["docker"].get(f"{kind}_run_options", [])
    words = [w for option in options for w in shlex.split(option)]
    pairs = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-e", "--env")]
    pairs += [w.split("=", 1)[1] for w in words if w.startswith("--env=")]
    return dict(pair.split("=", 1) for pair in pairs)


def token_mount(cfg: dict[str, Any]) -> tuple[str, str]:
    """(launcher source, path in the container) of the file_mounts entry holding the token."""
    path = container_env(cfg, "head")["RAY_AUTH_TOKEN_PATH"]
    for target, source in cfg["file_mounts"].items():
        folder = target.replace("~", CONTAINER_HOME, 1).rstrip("/")
        if path.startswith(folder + "/"):
            return source, path
    raise AssertionError(f"{path} is in no file_mounts target: {cfg['file_mounts']}")


def put_api_token(ssm: S3Endpoint, value: str) -> None:
    # Overwrite: moto's backends live as long as this process, whichever server serves them.
    ssm.client("ssm").put_parameter(
        Name=API_TOKEN_PARAMETER, Value=value, Type="SecureString", Overwrite=True
    )


@pytest.fixture
def ssm(cfg: dict[str, Any]) -> Iterator[S3Endpoint]:
    """moto on 127.0.0.1; clients in the cluster's region, where the parameter must be."""
    with moto_http_server() as url:
        yield S3Endpoint(url, region=cfg["provider"]["region"])


def run_start_commands(
    cfg: dict[str, Any], kind: str, tmp_path: Path, ssm: S3Endpoint
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The prepared config's start commands for `kind` (head or worker) as Ray's updater runs
    them: each in its own bash, in order, up to the first that fails (which fails `ray up`);
    the last one run is returned. The container's environment; /tmp/ paths moved under
    tmp_path (this machine is shared, and the head's first command kills the PID in
    /tmp/motoray-serve.pid)."""
    prepared = ray_validate(cfg)
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for name in ("ray", "motoray"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    # The venv's python (boto3) fetches the API token; its `ray` and `motoray` stay hidden.
    path = os.pathsep.join([str(stubs), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    for name in ("ray", "motoray"):
        assert shutil.which(name, path=path) == str(stubs / name)  # never a real `ray stop`
    env = {
        **container_env(cfg, kind),
        **FAKE_AWS_ENV,
        "AWS_ENDPOINT_URL_SSM": ssm.endpoint_url,
        "PATH": path,
        "HOME": str(tmp_path),
        "STUB_DIR": str(stubs),
        "RAY_HEAD_IP": "10.0.1.10",  # set by Ray's command runner on workers
        # Even a container that held the API token must not hand it to Ray.
        "MOTORAY_API_TOKEN": "held-by-the-container",
    }
    for command in prepared[f"{kind}_start_ray_commands"]:
        done = subprocess.run(
            ["bash", "-c", command.replace("/tmp/", f"{tmp_path}/")],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            break
    return done, stubs


def stub_env(stubs: Path, name: str, timeout: float = 30) -> dict[str, str]:
    """The environment the stand-in `name` (e.g. "ray-start") ran with; waits for it, since
    `motoray serve` runs in the background."""
    dump = stubs / f"{name}.env"

    def ran() -> bool:
        return dump.exists() and (stubs / f"{name}.args").exists()

    wait_until(ran, timeout, interval=0.05, what=f"{name} to run")
    return dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)


def ray_start_params(stubs: Path) -> dict[str, Any]:
    """The logged `ray start` arguments, parsed by Ray's own click command."""
    args = (stubs / "ray-start.args").read_text().splitlines()[1:]
    return ray_start_command.make_context("start", args).params


def test_ray_token_auth_on_every_node(cfg: dict[str, Any]) -> None:
    env = container_env(cfg, "head")
    assert env["RAY_AUTH_MODE"] == "token"
    assert container_env(cfg, "worker") == env  # the same for every container
    # No node type replaces the docker settings (and with them the variables).
    assert not any("docker" in t for t in cfg["available_node_types"].values())

    source, path = token_mount(cfg)
    # Outside the repo: `~/motoray: .` copies the repo to every node, and it is the image's
    # build context; Ray also expands `~` on the launcher.
    assert source.startswith("~/") and not Path(source).expanduser().is_relative_to(ROOT)
    assert path.startswith(CONTAINER_HOME + "/")


@pytest.mark.parametrize("kind", ["head", "worker"])
def test_every_ray_start_has_token_auth_and_no_api_token(
    cfg: dict[str, Any], kind: str, tmp_path: Path, ssm: S3Endpoint
) -> None:
    put_api_token(ssm, "api-secret-9d2e")
    done, stubs = run_start_commands(cfg, kind, tmp_path, ssm)
    assert done.returncode == 0, done.stderr

    _, token_path = token_mount(cfg)
    ray_start = stub_env(stubs, "ray-start")
    assert ray_start["RAY_AUTH_MODE"] == "token"
    assert ray_start["RAY_AUTH_TOKEN_PATH"] == token_path
    assert "MOTORAY_API_TOKEN" not in ray_start  # workers and job drivers inherit this
    assert "api-secret-9d2e" not in "\n".join(ray_start.values())
    assert ray_start["RAY_worker_niceness"] == "0"  # the API outranks pipeline tasks

    params = ray_start_params(stubs)
    assert params["head"] is (kind == "head")
    if kind == "head":
        # The dashboard (and its job API) on the head's loopback only: `ray dashboard` tunnels.
        assert params["dashboard_host"] == "127.0.0.1"
        assert params["autoscaling_config"] == "~/ray_bootstrap_config.yaml"
    else:
        assert params["address"] == "10.0.1.10:6379"


def test_api_token_goes_from_ssm_to_motoray_serve_only(
    cfg: dict[str, Any], tmp_path: Path, ssm: S3Endpoint
) -> None:
    put_api_token(ssm, "api-secret-9d2e")
    done, stubs = run_start_commands(cfg, "head", tmp_path, ssm)
    assert done.returncode == 0, done.stderr

    serve = stub_env(stubs, "motoray-serve")
    assert serve["MOTORAY_API_TOKEN"] == "api-secret-9d2e"  # from SSM, in the provider's region
    assert "token" not in serve  # the shell variable was never exported
    assert serve["RAY_AUTH_MODE"] == "token"  # the API is a Ray driver too
    assert serve["RAY_ADDRESS"] == "auto"
    assert "api-secret-9d2e" not in done.stdout + done.stderr
    # The PID the next `ray up` kills is the API's own, not a wrapper shell's.
    serve_pid = (stubs / "motoray-serve.pid").read_text()
    assert (tmp_path / "motoray-serve.pid").read_text() == serve_pid


def test_no_api_token_no_api(cfg: dict[str, Any], tmp_path: Path, ssm: S3Endpoint) -> None:
    with suppress(ssm.client("ssm").exceptions.ParameterNotFound):
        ssm.client("ssm").delete_parameter(Name=API_TOKEN_PARAMETER)
    done, stubs = run_start_commands(cfg, "head", tmp_path, ssm)
    assert done.returncode != 0  # `ray up` reports the failure
    assert "ParameterNotFound" in done.stderr
    assert (stubs / "ray-start.args").exists()
    # The shell that starts the API writes its PID at once (see the test above); bash has
    # exited, so no PID file means no API was started, now or later.
    assert not (tmp_path / "motoray-serve.pid").exists()
    assert not (stubs / "motoray-serve.env").exists()


# The validators must be able to fail: each broken copy below is rejected.


@pytest.mark.parametrize(
    ("node_type", "key", "value", "message"),
    [
        ("ondemand_worker", "InstanceTyp", "m6i", 'Unknown parameter in input: "InstanceTyp"'),
        ("head", "EbsOptimised", True, 'Unknown parameter in input: "EbsOptimised"'),
        ("spot_worker", "InstanceMarketOptions", {"MarketType": "Spot"}, "not in ['spot'"),
        ("head", "MetadataOptions", {"HttpTokens": True}, "Invalid type for parameter"),
    ],
)  # fmt: skip
def test_broken_node_config_is_rejected(
    cfg: dict[str, Any], node_type: str, key: str, value: Any, message: str
) -> None:
    broken = copy.deepcopy(cfg)
    broken["available_node_types"][node_type]["node_config"][key] = value
    assert message in ec2_errors(run_instances_params(broken, node_type))


def test_broken_disk_encryption_is_rejected(cfg: dict[str, Any]) -> None:
    broken = copy.deepcopy(cfg)
    ebs = broken["available_node_types"]["head"]["node_config"]["BlockDeviceMappings"][0]["Ebs"]
    ebs["Encrypted"] = "yes"
    ebs["KmsKeyID"] = ebs.pop("KmsKeyId")
    errors = ec2_errors(run_instances_params(broken, "head"))
    assert "Encrypted, value: yes" in errors
    assert 'Unknown parameter in BlockDeviceMappings[0].Ebs: "KmsKeyID"' in errors


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["available_node_types"]["spot_worker"].update(min_worker=0),
        lambda c: c["available_node_types"]["spot_worker"].update(resources={"spot": 0.5}),
        lambda c: c["available_node_types"]["head"].pop("node_config"),
        lambda c: c.update(idle_timeout="10m"),
        lambda c: c["docker"].update(imag="rayproject/ray:latest"),
    ],
    ids=["typo-min_workers", "fractional-resource", "no-node_config", "unknown-key", "docker"],
)
def test_broken_cluster_config_is_rejected_by_ray_schema(cfg: dict[str, Any], mutate: Any) -> None:
    broken = copy.deepcopy(cfg)
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(broken)
