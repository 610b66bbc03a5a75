"""Engine, EngineModel and EngineVersion of CreateServer: accepted values and defaults."""

from __future__ import annotations

from dataclasses import dataclass

from cmhost.service.errors import ValidationException

ENGINES = ("Chef", "ChefAutomate", "Puppet")
MODELS = {"Chef": "Single", "ChefAutomate": "Single", "Puppet": "Monolithic"}
# Major version accepted on create -> the full version the server shows from then on
# (behavior-notes: 12.11.1, 2020-07, 2019-08). Puppet 2017 was Puppet Enterprise 2017.3 on
# the original service, written the way 2019.8 became 2019-08.
VERSIONS = {
    "Chef": {"2": "2020-07", "12": "12.11.1"},
    "ChefAutomate": {"2": "2020-07"},
    "Puppet": {"2019": "2019-08", "2017": "2017-03"},
}
DEFAULT_VERSION = {"Chef": "2", "ChefAutomate": "2", "Puppet": "2019"}


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    model: str
    version: str


def full_version(engine: str, version: str) -> str:
    """The full version of `engine` a major `version` stands for; any other value as it is.

    Servers stored before versions were stored in full, and the major version a Chef major
    upgrade records, are shown in full through this."""
    return VERSIONS.get(engine, {}).get(version, version)


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
