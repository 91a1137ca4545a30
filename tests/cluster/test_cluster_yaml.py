"""cluster.yaml against Ray's own cluster schema and botocore's EC2 RunInstances model.

Everything here is offline: Ray's `prepare_config` only merges the AWS defaults file;
the AWS-touching part of `ray up` (bootstrap_aws: IAM, key pairs, subnet lookups) is not
called, so the IDs marked REPLACE_ME are checked for shape, not for existence.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
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

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"
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


def test_docker_image_matches_installed_ray(cfg: dict[str, Any]) -> None:
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert cfg["docker"]["image"] == f"rayproject/ray:{ray.__version__}-{python}-cpu"


def test_commands_install_motoray_and_start_its_services(cfg: dict[str, Any]) -> None:
    prepared = ray_validate(cfg)
    assert prepared["file_mounts"] == {"~/motoray": "."}
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
