"""Strict validation of rendered objects: Kubernetes kinds against kubernetes-validate's schemas, the
Prometheus Operator kinds against the CRD schemas vendored in crds/ (see the header of each file)."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

CRDS = Path(__file__).parent / "crds"

# Kubernetes checks that no schema expresses: names of Services are DNS-1035 labels, other names
# DNS-1123 subdomains; label values are at most 63 characters.
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def _strict(schema: Any) -> Any:
    """As kubectl --validate=strict: unknown fields are errors wherever a schema lists the fields.
    metadata is left open here and validated as ObjectMeta separately."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if isinstance(out.get("pattern"), str):
            # Go's RE2 takes `^(?i)...`; Python wants global flags first: `(?i)^...`
            out["pattern"] = re.sub(r"^\^\(\?([a-z]+)\)", r"(?\1)^", out["pattern"])
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> validator, for every vendored CRD version."""
    out: dict[tuple[str, str], jsonschema.Draft7Validator] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            jsonschema.Draft7Validator.check_schema(schema)
            out[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return out


def validate(obj: dict[str, Any], kube_version: str) -> None:
    """Raise AssertionError naming the object and the problem when `obj` is not valid."""
    kind, name = obj.get("kind"), obj.get("metadata", {}).get("name")
    where = f"{kind}/{name}"
    validator = crd_validators().get((obj.get("apiVersion", ""), kind or ""))
    try:
        if validator is not None:
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
            if errors:
                raise AssertionError(f"{where}: {errors[0].message} at {'/'.join(map(str, errors[0].path))}")
            # metadata is plain ObjectMeta: check it as a ConfigMap's
            kubernetes_validate.validate(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]},
                kube_version,
                strict=True,
            )
        else:
            kubernetes_validate.validate(obj, kube_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(
            f"{where} (Kubernetes {kube_version}): {exc.message} at {list(exc.path)}"
        ) from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise AssertionError(f"{where}: no schema for {obj.get('apiVersion')} in {kube_version}") from exc
    pattern = _DNS1035 if kind == "Service" else _DNS1123_SUBDOMAIN
    assert name and pattern.match(name), f"{where}: invalid name for a {kind}"
    for key, value in obj["metadata"].get("labels", {}).items():
        assert _LABEL_VALUE.match(str(value)), f"{where}: label {key}={value!r} is not a valid label value"
