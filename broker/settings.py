"""One settings object for the whole platform: `GEL_*` environment variables, then an optional TOML
file named by `GEL_CONFIG`, then the defaults below (which make the quick start run anywhere)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from broker.gelxml.parsing import ParseLimits

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Platform configuration. Every field is also the environment variable `GEL_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="GEL_", extra="ignore", frozen=True)

    config: Path | None = Field(default=None, description="TOML file with any of these settings.")
    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/%2F", description="RabbitMQ URL (the production transport)."
    )
    transport: Literal["auto", "rabbitmq", "embedded"] = Field(
        default="auto", description="auto uses RabbitMQ when it answers, else the in-process transport."
    )
    database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'var' / 'gel.db'}",
        description="SQLAlchemy URL of the platform store (message log, orchestrator); SQLite or PostgreSQL.",
    )
    schemas_dir: Path = Field(default=PROJECT_ROOT / "schemas", description="Root folder of the GEL-XML schemas.")
    certs_dir: Path = Field(default=PROJECT_ROOT / "certs" / "dev", description="Folder of the platform PKI.")
    entities_file: Path = Field(
        default=PROJECT_ROOT / "deploy" / "entities.yaml", description="Registry of the entities on the platform."
    )
    catalog_file: Path = Field(
        default=PROJECT_ROOT / "deploy" / "catalog.yaml",
        description="Seed of the service catalog (providers, callers, status of every service version): the "
        "catalog store adds the versions it does not have yet; afterwards use `gel catalog` or the API.",
    )
    published_schemas_dir: Path = Field(
        default=PROJECT_ROOT / "var" / "esquemas-publicados",
        description="Where each process lays out the schemas published through the catalog, to compile them.",
    )
    catalog_refresh_seconds: float = Field(
        default=2.0, gt=0, description="How often a running gateway checks the catalog store for changes.",
    )
    chains_dir: Path = Field(default=PROJECT_ROOT / "chains", description="Folder of the chain definitions (YAML).")
    orchestrator_database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'var' / 'orquestador.db'}",
        description="SQLAlchemy URL of the orchestrator's store (instances, history, timers, tasks, outbox).",
    )
    rabbitmq_vhost: str = Field(default="gel", description="RabbitMQ virtual host of the platform's topology.")
    rabbitmq_credentials_file: Path = Field(
        default=PROJECT_ROOT / "var" / "rabbitmq-credentials.json",
        description="Passwords of the entities' RabbitMQ users (users are global to the RabbitMQ node, so one file "
        "serves every vhost), written by `gel topology apply` (mode 0600).",
    )
    api_tokens_file: Path = Field(
        default=PROJECT_ROOT / "var" / "api-tokens.json",
        description="Tokens of the monitoring API (SHA-256 hashes with role and entity), written by "
        "`gel api token-crear` (mode 0600).",
    )
    max_message_bytes: int = Field(default=1_048_576, gt=0, description="Largest message accepted, in bytes.")
    max_depth: int = Field(default=64, gt=0, le=250, description="Deepest element nesting accepted.")
    replay_window_seconds: int = Field(
        default=300, gt=0, description="How far fechaHoraEnvio may be from the platform clock."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="json for services, console for people; auto picks by terminal."
    )
    log_level: str = Field(default="INFO", description="Minimum log level.")

    @property
    def parse_limits(self) -> ParseLimits:
        return ParseLimits(max_bytes=self.max_message_bytes, max_depth=self.max_depth)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        import os

        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("GEL_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
