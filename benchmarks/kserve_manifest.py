"""Validate ``docker/inferenceservice.yaml`` with the KServe Python SDK's own model.

The manifest is deserialized into ``kserve.V1beta1InferenceService`` the way the SDK's API
client turns a server response into a model: ``kserve.ApiClient`` walks each model's
``openapi_types``; the Kubernetes types a KServe model refers to (``V1ObjectMeta``,
``V1Container``, ``V1Volume``, ...) are handed to ``kubernetes.client.ApiClient``, which
builds them with its own models, since ``kserve.models`` holds none of them. The check fails
(exit 1) when:

- ``apiVersion``/``kind`` are not ``serving.kserve.io/v1beta1``/``InferenceService``;
- a model's client-side validation raises (a required field missing, such as
  ``spec.predictor`` or a container's ``name``; a value of the wrong type);
- a key in the YAML is not a field the SDK knows. The generated models drop unknown keys
  without a word, so the model is serialized back with ``sanitize_for_serialization`` and
  every YAML key missing from that dict is reported with its path (``readOnlly`` in a volume
  mount, say); a value the round trip changed (``"1"`` coerced to ``1``) is reported too.

It then prints what it checked: kind, name, each predictor container's image, ports, volume
mounts, probes and security context.

The KServe SDK pins pandas below 3, so it lives in its own virtual environment, not the
project's::

    python3 -m venv /work/bench_envs/kserve
    /work/bench_envs/kserve/bin/pip install kserve
    /work/bench_envs/kserve/bin/python benchmarks/kserve_manifest.py \\
        [--manifest docker/inferenceservice.yaml]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "docker" / "inferenceservice.yaml"


class ManifestError(Exception):
    """The manifest is not a valid ``V1beta1InferenceService``; the message says why."""


def load_manifest(path: Path) -> dict[str, Any]:
    """Read ``path`` as a YAML file holding exactly one mapping (one Kubernetes object)."""
    with path.open(encoding="utf-8") as handle:
        documents = [doc for doc in yaml.safe_load_all(handle) if doc is not None]
    if len(documents) != 1:
        raise ManifestError(f"{path}: expected one YAML document, found {len(documents)}")
    if not isinstance(documents[0], dict):
        raise ManifestError(
            f"{path}: the document is a {type(documents[0]).__name__}, not a mapping"
        )
    return documents[0]


def check_header(doc: dict[str, Any]) -> None:
    """Raise unless the object is a ``serving.kserve.io/v1beta1`` ``InferenceService``."""
    problems = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion is {doc.get('apiVersion')!r}, expected {API_VERSION!r}")
    if doc.get("kind") != KIND:
        problems.append(f"kind is {doc.get('kind')!r}, expected {KIND!r}")
    if problems:
        raise ManifestError("; ".join(problems))


def round_trip_differences(original: Any, round_tripped: Any, path: str = "") -> Iterator[str]:
    """Yield one line per difference between the YAML and its SDK round trip.

    A key of ``original`` that ``round_tripped`` lacks is a field the SDK model does not know
    (or a null, which the SDK drops as well); a scalar that differs was coerced by the SDK.
    Keys the SDK adds are not differences: there are none today, but defaults would be fine.
    """
    if isinstance(original, dict):
        if not isinstance(round_tripped, dict):
            yield f"{path or '<root>'}: a mapping in the YAML, {round_tripped!r} after the SDK"
            return
        for key, value in original.items():
            child = f"{path}.{key}" if path else str(key)
            if key not in round_tripped:
                if value is None:
                    yield f"{child}: null; the SDK drops it, so it cannot be checked"
                else:
                    yield f"{child}: unknown field, the SDK model has no such key"
            else:
                yield from round_trip_differences(value, round_tripped[key], child)
    elif isinstance(original, list):
        if not isinstance(round_tripped, list) or len(round_tripped) != len(original):
            yield f"{path}: list of {len(original)} in the YAML, {round_tripped!r} after the SDK"
            return
        for index, (item, item_rt) in enumerate(zip(original, round_tripped)):
            yield from round_trip_differences(item, item_rt, f"{path}[{index}]")
    elif original != round_tripped or type(original) is not type(round_tripped):
        yield (
            f"{path}: {original!r} in the YAML became {round_tripped!r} in the SDK model "
            "(wrong type for the field)"
        )


def describe_probe(probe: Any) -> str:
    """One line for a ``V1Probe``: its handler (HTTP path and port, TCP, gRPC or exec)."""
    if probe is None:
        return "none"
    if probe.http_get is not None:
        scheme = probe.http_get.scheme or "HTTP"
        return f"{scheme} GET {probe.http_get.path} on port {probe.http_get.port}"
    if probe.tcp_socket is not None:
        return f"TCP on port {probe.tcp_socket.port}"
    if probe.grpc is not None:
        return f"gRPC on port {probe.grpc.port}"
    action = getattr(probe, "_exec", None) or getattr(probe, "var_exec", None)
    if action is not None:  # ``_exec`` in classic models, ``var_exec`` in pydantic ones
        return f"exec {action.command}"
    return "no handler"


def summarise(isvc: Any, sanitize: Any) -> list[str]:
    """Lines describing the deserialized ``V1beta1InferenceService`` (read from the model)."""
    lines = [f"kind: {isvc.kind} ({isvc.api_version})", f"name: {isvc.metadata.name}"]
    predictor = isvc.spec.predictor
    lines.append(f"predictor replicas: min {predictor.min_replicas}, max {predictor.max_replicas}")
    for container in predictor.containers or []:
        lines.append(f"container {container.name}: image {container.image}")
        for port in container.ports or []:
            lines.append(f"  port: {port.container_port}/{port.protocol or 'TCP'}")
        for env in container.env or []:
            lines.append(f"  env: {env.name}={env.value}")
        for mount in container.volume_mounts or []:
            mode = "read-only" if mount.read_only else "read-write"
            lines.append(f"  volume mount: {mount.name} at {mount.mount_path} ({mode})")
        lines.append(f"  readiness probe: {describe_probe(container.readiness_probe)}")
        lines.append(f"  liveness probe: {describe_probe(container.liveness_probe)}")
        if container.startup_probe is not None:
            lines.append(f"  startup probe: {describe_probe(container.startup_probe)}")
        resources = sanitize(container.resources) if container.resources else None
        lines.append(f"  resources: {json.dumps(resources, sort_keys=True)}")
        security = sanitize(container.security_context) if container.security_context else None
        lines.append(f"  security context: {json.dumps(security, sort_keys=True)}")
    if not predictor.containers:
        lines.append("predictor containers: none")
    for volume in predictor.volumes or []:
        source = {k: v for k, v in sanitize(volume).items() if k != "name"}
        lines.append(f"volume {volume.name}: {json.dumps(source, sort_keys=True)}")
    return lines


def make_api_client() -> Any:
    """A ``kserve.ApiClient`` that also deserializes the Kubernetes types KServe refers to.

    ``kserve.ApiClient`` looks type names up in ``kserve.models`` only, and KServe's models name
    Kubernetes types (``V1ObjectMeta``, ``list[V1Container]``) it does not define; those go to
    ``kubernetes.client.ApiClient``, whichever generation of models it ships (the classic
    ``openapi_types`` ones, or the pydantic ones of kubernetes>=35).
    """
    import kserve
    import kserve.models
    import kubernetes.client

    kube_client = kubernetes.client.ApiClient()

    class KServeKubernetesApiClient(kserve.ApiClient):
        """``kserve.ApiClient`` that resolves Kubernetes type names through kubernetes."""

        def _ApiClient__deserialize(self, data: Any, klass: Any) -> Any:
            """Deserialize with KServe's client, Kubernetes types with Kubernetes' client."""
            if (
                isinstance(klass, str)
                and klass not in self.NATIVE_TYPES_MAPPING
                and not klass.startswith(("list[", "dict("))
                and not hasattr(kserve.models, klass)
                and hasattr(kubernetes.client.models, klass)
            ):
                return kube_client._ApiClient__deserialize(data, klass)
            return super()._ApiClient__deserialize(data, klass)

    return KServeKubernetesApiClient()


def validate(doc: dict[str, Any]) -> tuple[Any, Any]:
    """Deserialize ``doc`` into ``V1beta1InferenceService``; raise ``ManifestError`` if invalid.

    Returns the model and the API client (for ``sanitize_for_serialization``).
    """
    import kserve

    check_header(doc)
    client = make_api_client()
    try:
        isvc = client._ApiClient__deserialize(doc, kserve.V1beta1InferenceService)
    except (ValueError, TypeError) as error:  # pydantic's ValidationError is a ValueError
        raise ManifestError(f"the SDK's client-side validation failed: {error}") from error
    if isvc.spec is None or isvc.spec.predictor is None:
        raise ManifestError("spec.predictor is missing")
    round_tripped = client.sanitize_for_serialization(isvc)
    differences = list(round_trip_differences(doc, round_tripped))
    if differences:
        raise ManifestError(
            "the SDK model does not hold the YAML as written:\n  " + "\n  ".join(differences)
        )
    return isvc, client


def main(argv: list[str] | None = None) -> int:
    """Validate the manifest, print what was checked; 0 if valid, 1 if not, 2 if unusable."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        help="InferenceService YAML (default: docker/inferenceservice.yaml)",
    )
    args = parser.parse_args(argv)
    try:
        from importlib.metadata import version

        import kserve  # noqa: F401  (checked here so the message can say where to get it)

        versions = f"kserve {version('kserve')}, kubernetes {version('kubernetes')}"
    except ImportError as error:
        print(
            f"error: the KServe SDK is not importable ({error}); run this with the python "
            "of a venv that has `pip install kserve`, e.g. /work/bench_envs/kserve/bin/python",
            file=sys.stderr,
        )
        return 2
    print(f"{args.manifest} with {versions}")
    try:
        doc = load_manifest(args.manifest)
    except (OSError, yaml.YAMLError) as error:
        print(f"error: cannot read {args.manifest}: {error}", file=sys.stderr)
        return 2
    except ManifestError as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    try:
        isvc, client = validate(doc)
    except ManifestError as error:
        print(f"FAIL: {args.manifest}: {error}", file=sys.stderr)
        return 1
    for line in summarise(isvc, client.sanitize_for_serialization):
        print(line)
    print(f"OK: {args.manifest} is a valid {API_VERSION} {KIND} for the KServe SDK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
