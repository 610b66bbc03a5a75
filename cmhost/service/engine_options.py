"""Engine, EngineModel and EngineVersion of CreateServer: accepted values and defaults."""

from __future__ import annotations

from dataclasses import dataclass

from cmhost.service.errors import ValidationException

ENGINES = ("Chef", "ChefAutomate", "Puppet")
MODELS = {"Chef": "Single", "ChefAutomate": "Single", "Puppet": "Monolithic"}
# Major version accepted on create -> the full version DescribeServers shows.
VERSIONS = {
    "Chef": {"2": "2", "12": "12.11.1"},
    "ChefAutomate": {"2": "2"},
    "Puppet": {"2019": "2019", "2017": "2017"},
}
DEFAULT_VERSION = {"Chef": "2", "ChefAutomate": "2", "Puppet": "2019"}


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    model: str
    version: str


def choose_engine(engine: str, model: str | None, version: str | None) -> EngineChoice:
    if engine not in ENGINES:
        raise ValidationException(
            f"Engine '{engine}' is not supported. Valid values are: {', '.join(ENGINES)}.")
    expected_model = MODELS[engine]
    if model is not None and model != expected_model:
        raise ValidationException(
            f"EngineModel '{model}' is not valid for engine {engine}; use '{expected_model}'.")
    versions = VERSIONS[engine]
    if version is None:
        version = DEFAULT_VERSION[engine]
    full = versions.get(version) or (version if version in versions.values() else None)
    if full is None:
        raise ValidationException(
            f"EngineVersion '{version}' is not valid for engine {engine}. "
            f"Valid values are: {', '.join(versions)}.")
    return EngineChoice(engine=engine, model=expected_model, version=full)
