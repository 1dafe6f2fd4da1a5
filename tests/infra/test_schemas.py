"""Every object is valid for the API server that will receive it, checked offline.

Core objects against Kubernetes' own OpenAPI schemas (kubernetes-validate, strict: unknown
fields are errors), KEDA objects against the CRDs KEDA installs (SHARED_DIR/keda-crds).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from conftest import OVERLAYS, describe, require_module

# KEDA 2.20 supports Kubernetes 1.33 to 1.35 (keda.sh, "Kubernetes Compatibility"): the oldest
# and the newest of them. (podFailurePolicy, which the ScaledJob's Jobs use, is GA since 1.31.)
K8S_VERSIONS = os.environ.get("K8S_VERSIONS", "1.33.0,1.35.0").split(",")
KEDA_GROUP = "keda.sh"


def is_keda(doc: dict) -> bool:
    return doc["apiVersion"].split("/")[0] == KEDA_GROUP


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_match_the_kubernetes_schema(manifests, version):
    kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")
    errors = []
    for source, docs in manifests.items():
        for doc in docs:
            if is_keda(doc):
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                errors.append(f"{source}: {describe(doc)}: {err.message} at {'/'.join(map(str, err.path))}")
            except kubernetes_validate.SchemaNotFoundError as err:
                errors.append(f"{source}: {describe(doc)}: no schema ({err}); "
                              "upgrade kubernetes-validate or set K8S_VERSIONS")
            except kubernetes_validate.InvalidSchemaError as err:
                errors.append(f"{source}: {describe(doc)}: {err}")
    assert not errors, "\n".join(errors)


def strict(schema: dict) -> dict:
    """The CRD schema, rejecting unknown fields.

    The API server silently prunes fields a structural schema doesn't know, so a typo such as
    `rollout: {stratgy: gradual}` would apply cleanly and do nothing. Reject them here instead.
    """
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    # apiVersion/kind/metadata are checked by the API server itself, not by the CRD schema.
    schema["properties"].setdefault("apiVersion", {"type": "string"})
    schema["properties"].setdefault("kind", {"type": "string"})
    schema["properties"].setdefault("metadata", {"type": "object"})
    return schema


@pytest.fixture(scope="session")
def keda_schemas(shared_dir: Path, yaml) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema, from every CRD in SHARED_DIR/keda-crds."""
    schemas = {}
    for path in sorted((shared_dir / "keda-crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    assert schemas, f"no CustomResourceDefinition in {shared_dir / 'keda-crds'}"
    return schemas


def test_keda_objects_match_the_keda_crds(manifests, keda_schemas):
    jsonschema = require_module("jsonschema", "jsonschema")
    errors = []
    checked = 0
    for source, docs in manifests.items():
        for doc in docs:
            if not is_keda(doc):
                continue
            schema = keda_schemas.get((doc["apiVersion"], doc["kind"]))
            if schema is None:
                errors.append(f"{source}: {describe(doc)}: no CRD for {doc['apiVersion']} {doc['kind']}")
                continue
            validator = jsonschema.Draft7Validator(strict(schema))
            for error in validator.iter_errors(doc):
                errors.append(f"{source}: {describe(doc)}: {error.message} at /{'/'.join(map(str, error.path))}")
            checked += 1
    assert not errors, "\n".join(errors)
    # base, eks, eks-pod-identity and local each carry a ScaledJob and a TriggerAuthentication.
    assert checked >= 2 * len(OVERLAYS), f"only {checked} KEDA objects found"


def test_strict_keda_schema_catches_a_typo(manifests, keda_schemas):
    """The check above is only worth something if it rejects a misspelt field."""
    jsonschema = require_module("jsonschema", "jsonschema")
    scaled_job = next(d for d in manifests["base"] if d["kind"] == "ScaledJob")
    broken = copy.deepcopy(scaled_job)
    broken["spec"]["rollout"] = {"stratgy": "gradual"}
    validator = jsonschema.Draft7Validator(strict(keda_schemas[(broken["apiVersion"], "ScaledJob")]))
    assert list(validator.iter_errors(broken)), "a misspelt field went through"
