"""The prod overlay's database as issue 23 asks for it: no superuser, failover quorum, backups,
pinned images, required anti-affinity; and every CloudNativePG object valid against the
operator's own CRDs (k8s/crds, scripts/crd_check.py, run on the rendered overlays by
.ci/deploy-checks), which refuse a field they do not know."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROD = ROOT / "k8s" / "overlays" / "prod"
_spec = importlib.util.spec_from_file_location("crd_check", ROOT / "scripts" / "crd_check.py")
crd_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crd_check)


@pytest.fixture(scope="module")
def schemas():
    return crd_check.load_schemas()


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    """The prod overlay's own objects, by ``kind/name``."""
    found = {}
    for name in yaml.safe_load((PROD / "kustomization.yaml").read_text())["resources"]:
        if name.endswith(".yaml"):
            for document in yaml.safe_load_all((PROD / name).read_text()):
                found[f"{document['kind']}/{document['metadata']['name']}"] = document
    return found


def test_every_cloudnativepg_object_of_the_overlay_is_valid(objects, schemas):
    kinds = sorted(
        k for k, d in objects.items() if d["apiVersion"].split("/")[0].endswith("cnpg.io")
    )
    assert kinds == [
        "Cluster/gateway-db",
        "ObjectStore/gateway-db-backups",
        "Pooler/gateway-db-pooler-rw",
        "ScheduledBackup/gateway-db-nightly",
    ]
    assert list(crd_check.problems(objects.values(), schemas)) == []


@pytest.mark.parametrize(
    ("mistake", "path", "value", "problem"),
    [
        (
            "a misspelled failoverQuorum (the API server would drop it: no quorum, silently)",
            ["spec", "postgresql", "synchronous", "failoverQuorom"],
            True,
            "Cluster/gateway-db: spec.postgresql.synchronous: Additional properties are not "
            "allowed ('failoverQuorom' was unexpected)",
        ),
        (
            "a durability outside the enum",
            ["spec", "postgresql", "synchronous", "dataDurability"],
            "strict",
            "Cluster/gateway-db: spec.postgresql.synchronous.dataDurability: 'strict' is not one "
            "of ['required', 'preferred']",
        ),
        (
            "superuser access as a string",
            ["spec", "enableSuperuserAccess"],
            "false",
            "Cluster/gateway-db: spec.enableSuperuserAccess: 'false' is not of type 'boolean'",
        ),
    ],
)
def test_the_check_refuses_what_the_operator_would_not_take(
    objects, schemas, mistake, path, value, problem
):
    cluster = copy.deepcopy(objects["Cluster/gateway-db"])
    node = cluster
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert list(crd_check.problems([cluster], schemas)) == [problem], mistake


def test_a_kind_without_a_crd_here_is_refused(schemas):
    stray = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Publication",
        "metadata": {"name": "p"},
    }
    assert list(crd_check.problems([stray], schemas)) == [
        "Publication/p: no CRD for postgresql.cnpg.io/v1 Publication in k8s/crds"
    ]


def test_the_cluster_keeps_acknowledged_commits_through_a_failover(objects):
    spec = objects["Cluster/gateway-db"]["spec"]
    assert spec["instances"] == 3
    assert spec["postgresql"]["synchronous"] == {
        "method": "any",
        "number": 1,
        "dataDurability": "required",
        "failoverQuorum": True,
    }
    assert spec["postgresql"]["parameters"]["synchronous_commit"] == "on"
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"


def test_no_superuser_and_the_roles_declared(objects):
    spec = objects["Cluster/gateway-db"]["spec"]
    assert spec["enableSuperuserAccess"] is False
    assert spec["bootstrap"]["initdb"]["owner"] == "gateway_owner"
    roles = {role["name"]: role for role in spec["managed"]["roles"]}
    assert sorted(roles) == [
        "gateway_app",
        "gateway_audit_reader",
        "gateway_auditor",
        "gateway_login",
        "gateway_owner",
    ]
    assert all(not r.get("superuser") and not r.get("bypassrls") for r in roles.values())
    # Not even the owner: on PostgreSQL 15 CREATEROLE is nearly a superuser.
    assert [name for name, role in roles.items() if role.get("createrole")] == []
    assert roles["gateway_login"]["inRoles"] == ["gateway_app"]
    assert roles["gateway_auditor"]["inRoles"] == ["gateway_audit_reader"]


def test_wal_is_archived_and_backed_up_nightly_through_the_barman_cloud_plugin(objects):
    spec = objects["Cluster/gateway-db"]["spec"]
    assert spec["plugins"] == [
        {
            "name": "barman-cloud.cloudnative-pg.io",
            "isWALArchiver": True,
            "parameters": {"barmanObjectName": "gateway-db-backups"},
        }
    ]
    store = objects["ObjectStore/gateway-db-backups"]["spec"]
    assert store["configuration"]["wal"]["encryption"] == "AES256"
    assert store["configuration"]["data"]["encryption"] == "AES256"
    assert store["retentionPolicy"] == "30d"
    backup = objects["ScheduledBackup/gateway-db-nightly"]["spec"]
    assert (backup["cluster"]["name"], backup["method"]) == ("gateway-db", "plugin")
    assert backup["pluginConfiguration"] == {"name": "barman-cloud.cloudnative-pg.io"}


def test_images_are_pinned_by_digest(objects):
    image = objects["Cluster/gateway-db"]["spec"]["imageName"]
    assert image.startswith("ghcr.io/cloudnative-pg/postgresql:15.") and "@sha256:" in image
    (container,) = objects["Pooler/gateway-db-pooler-rw"]["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "pgbouncer"
    assert (
        container["image"].startswith("ghcr.io/cloudnative-pg/pgbouncer:")
        and "@sha256:" in (container["image"])
    )


def test_the_pooler_keeps_one_instance_through_a_node_drain(objects):
    pooler = objects["Pooler/gateway-db-pooler-rw"]
    budget = objects["PodDisruptionBudget/gateway-db-pooler-rw"]["spec"]
    assert pooler["spec"]["instances"] == 2 and budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"] == {"cnpg.io/poolerName": "gateway-db-pooler-rw"}
    anti = pooler["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["labelSelector"]["matchLabels"] == budget["selector"]["matchLabels"]
