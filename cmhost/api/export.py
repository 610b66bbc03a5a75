"""Export the service model as botocore data files, so SDKs without OpsWorks CM can call cmhost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cmhost.api.model import SERVICE, Operation, ServiceModel, Shape

SERVICE_NAME = "opsworkscm"  # the botocore service name: `boto3.client("opsworkscm")`

JsonObject = dict[str, Any]


def service_document(service: ServiceModel = SERVICE) -> JsonObject:
    """The `service-2.json` document of `service`."""
    m = service.metadata
    metadata: JsonObject = {
        "apiVersion": m.api_version,
        "endpointPrefix": m.endpoint_prefix,
        "jsonVersion": m.json_version,
        "protocol": m.protocol,
        "protocols": list(m.protocols),
        "serviceAbbreviation": m.service_abbreviation,
        "serviceFullName": m.service_full_name,
        "serviceId": m.service_id,
        "signatureVersion": m.signature_version,
        "signingName": m.signing_name,
        "targetPrefix": m.target_prefix,
        "uid": m.uid,
        "auth": list(m.auth),
    }
    return {
        "version": "2.0",
        "metadata": metadata,
        "operations": {name: _operation(op) for name, op in service.operations.items()},
        "shapes": {name: _shape(shape) for name, shape in service.shapes.items()},
        "documentation": service.documentation,
    }


def paginators_document(service: ServiceModel = SERVICE) -> JsonObject:
    """The `paginators-1.json` document of `service`."""
    return {
        "pagination": {
            name: {
                "input_token": p.input_token,
                "limit_key": p.limit_key,
                "output_token": p.output_token,
                "result_key": p.result_key,
            }
            for name, p in service.paginators.items()
        }
    }


def waiters_document(service: ServiceModel = SERVICE) -> JsonObject:
    """The `waiters-2.json` document of `service`."""
    return {
        "version": 2,
        "waiters": {
            name: {
                "delay": w.delay,
                "maxAttempts": w.max_attempts,
                "operation": w.operation,
                "description": w.description,
                "acceptors": [
                    {
                        "expected": a.expected,
                        "state": a.state,
                        "matcher": a.matcher,
                        "argument": a.argument,
                    }
                    for a in w.acceptors
                ],
            }
            for name, w in service.waiters.items()
        },
    }


def endpoint_ruleset_document() -> JsonObject:
    """An `endpoint-rule-set-1.json` that sends requests to the endpoint the caller configured.

    cmhost has no fixed public address, so there is no default: without `endpoint_url`
    (`--endpoint-url`, `AWS_ENDPOINT_URL`) the SDK raises an error that says so.
    """
    return {
        "version": "1.0",
        "parameters": {
            "Region": {
                "builtIn": "AWS::Region",
                "required": False,
                "documentation": "The region used to sign the request.",
                "type": "String",
            },
            "Endpoint": {
                "builtIn": "SDK::Endpoint",
                "required": False,
                "documentation": "The cmhost endpoint, for example http://127.0.0.1:4580.",
                "type": "String",
            },
        },
        "rules": [
            {
                "conditions": [{"fn": "isSet", "argv": [{"ref": "Endpoint"}]}],
                "endpoint": {"url": {"ref": "Endpoint"}, "properties": {}, "headers": {}},
                "type": "endpoint",
            },
            {
                "conditions": [],
                "error": (
                    "OpsWorks CM is served by cmhost: set an explicit endpoint URL "
                    "(for example http://127.0.0.1:4580)."
                ),
                "type": "error",
            },
        ],
    }


def export_model(directory: Path) -> list[Path]:
    """Write the botocore data files under `directory/opsworkscm/2016-11-01/`; return their paths.

    With `AWS_DATA_PATH=directory`, botocore and boto3 load this model for "opsworkscm".
    """
    target = Path(directory) / SERVICE_NAME / SERVICE.metadata.api_version
    target.mkdir(parents=True, exist_ok=True)
    documents = {
        "service-2.json": service_document(),
        "paginators-1.json": paginators_document(),
        "waiters-2.json": waiters_document(),
        "endpoint-rule-set-1.json": endpoint_ruleset_document(),
    }
    written = []
    for filename, document in documents.items():
        path = target / filename
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _operation(op: Operation) -> JsonObject:
    doc: JsonObject = {
        "name": op.name,
        "http": {"method": op.http_method, "requestUri": op.request_uri},
        "input": {"shape": op.input.name},
        "output": {"shape": op.output.name},
    }
    if op.errors:
        doc["errors"] = [{"shape": e} for e in op.errors]
    if op.documentation:
        doc["documentation"] = op.documentation
    return doc


def _shape(shape: Shape) -> JsonObject:
    doc: JsonObject = {"type": shape.type}
    if shape.type == "structure":
        if shape.required:
            doc["required"] = list(shape.required)
        members: JsonObject = {}
        for m in shape.members:
            ref: JsonObject = {"shape": m.shape.name}
            if m.deprecated:
                ref["deprecated"] = True
            if m.documentation:
                ref["documentation"] = m.documentation
            members[m.name] = ref
        doc["members"] = members
    if shape.member is not None:
        doc["member"] = {"shape": shape.member.name}
    for key, value in (("min", shape.min), ("max", shape.max), ("pattern", shape.pattern)):
        if value is not None:
            doc[key] = value
    if shape.enum:
        doc["enum"] = list(shape.enum)
    if shape.sensitive:
        doc["sensitive"] = True
    if shape.exception:
        doc["exception"] = True
    if shape.documentation:
        doc["documentation"] = shape.documentation
    return doc
