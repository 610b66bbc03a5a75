"""boto3 sessions that know the opsworkscm service: botocore's own model when it ships one
(1.40.18 does), else the one `cmhost model export` writes (newer botocore dropped it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def botocore_has_opsworkscm() -> bool:
    import botocore.session

    return "opsworkscm" in botocore.session.get_session().get_available_services()


def export_sdk_model(directory: Path) -> Path:
    """Write cmhost's model for AWS_DATA_PATH into `directory`; returns it."""
    from cmhost.api.export import export_model

    export_model(directory)
    return directory


def sdk_session(model_dir: Path | None) -> Any:
    """A boto3 session of its own; with `model_dir`, its loader looks there first."""
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    if model_dir is not None:
        core.get_component("data_loader").search_paths.insert(0, str(model_dir))
    return boto3.session.Session(botocore_session=core)
