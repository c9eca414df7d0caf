"""The one settings object of saverzoo.

Precedence, highest first: keyword arguments, ``SAVERZOO_*`` environment variables, the TOML
file named by ``SAVERZOO_CONFIG`` (default ``<user config dir>/saverzoo/config.toml``, optional),
then the defaults below. Credentials never appear in clear text: the database URL is shown with
its password masked (``Settings.database_display``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url

from cluster.redact import database_display

APP_NAME = "saverzoo"
MIN_TOKEN_LENGTH = 16
DEFAULT_BUDGETS = (0.0, 0.1, 0.5, 1.0, 2.0)
SUPPORTED_SCHEMES = ("sqlite", "postgresql+psycopg")
DATABASE_SCHEMES = (*SUPPORTED_SCHEMES, "sqlite+pysqlite")  # pysqlite: sqlite's default driver


def data_dir() -> Path:
    """Where saverzoo keeps its embedded database and local services' data."""
    return Path(platformdirs.user_data_dir(APP_NAME))


def config_file() -> Path:
    configured = os.environ.get("SAVERZOO_CONFIG")
    if configured:
        return Path(configured)
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SAVERZOO_", extra="ignore")

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{data_dir() / 'saverzoo.db'}",
        repr=False,  # may hold a password: database_display is the printable form
        description="SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://user@host/db (other "
        "schemes are refused); the default is an SQLite file in the user data directory.",
    )
    search_budgets: list[float] = Field(
        default_factory=lambda: list(DEFAULT_BUDGETS),
        description="Accuracy drops (points) kept up to date for new datasets.",
    )
    holdout_fraction: float = Field(
        default=0.5,
        description="Share of samples used to pick thresholds in held-out estimates (fixed per "
        "dataset when it is created).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint; unset: the local object store when it runs, else AWS itself.",
    )
    s3_region: str = Field(default="us-east-1", description="S3 region name.")
    s3_max_attempts: int = Field(
        default=8, ge=1, description="Attempts per S3 call (throttling, 5xx, connection errors)."
    )
    objectstore_dir: Path = Field(
        default_factory=lambda: data_dir() / "objectstore",
        description="Data folder of the local SeaweedFS object store.",
    )
    objectstore_port: int = Field(
        default=8333,
        ge=1,
        le=65535,
        description="S3 port P of the local object store; its other ports are P+1 to P+4 and "
        "their gRPC ports those +10000.",
    )

    max_shards: int = Field(
        default=100_000,
        ge=1,
        description="Most shards a --shards pattern may expand to (ImageNet-21k has ~14,000 "
        "shards of 1,000 images); checked before the pattern is expanded.",
    )

    shard_cache_dir: Path | None = Field(
        default=None,
        description="Where a node's workers keep shards read from object storage, read once "
        "per node (default: shard-cache in the user data directory of each node).",
    )
    shard_cache_gb: float = Field(
        default=20.0,
        ge=0,
        description="Size limit of the node's shard cache in GB (ImageNet-val is 5.5 GB); 0 "
        "turns the cache off.",
    )

    ray_node_ip: str | None = Field(
        default=None,
        description="This machine's address as Ray should see it when joining a cluster (unset: "
        "the embedded Ray on 127.0.0.1, loopback only).",
    )

    ray_address: str | None = Field(
        default=None,
        description="Where sweeps run by default: a Ray head host:port, auto, or the Ray Jobs "
        "URL http://HOST:8265; unset: an embedded local Ray.",
    )

    timm_plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Python modules that register models with timm (comma-separated), imported "
        "before timm's registry is read, in this process and in every worker.",
    )
    report_dir: Path = Field(
        default_factory=lambda: data_dir() / "reports",
        description="Where `saverzoo report` writes by default and `saverzoo serve` keeps reports.",
    )

    # The HTTP API (saverzoo serve). Tokens are secrets: never shown by repr, never logged.
    api_read_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="Bearer tokens that may read (comma-separated in the environment; at least "
        "16 characters each).",
    )
    api_write_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="Bearer tokens that may read and submit sweeps (comma-separated; at least 16 "
        "characters each).",
    )
    api_open_read: bool = Field(
        default=False,
        description="Let anyone read the API without a token (submitting still needs a write "
        "token).",
    )

    @field_validator("api_read_tokens", "api_write_tokens", "timm_plugins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return [token.strip() for token in value if str(token).strip()]
        return value

    @field_validator("api_read_tokens", "api_write_tokens")
    @classmethod
    def _long_tokens(cls, value: list[str]) -> list[str]:
        if any(len(token) < MIN_TOKEN_LENGTH for token in value):
            raise ValueError(
                f"API tokens need at least {MIN_TOKEN_LENGTH} characters; make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _known_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except Exception as error:  # sqlalchemy raises ArgumentError with a terse message
            raise ValueError(
                f"SAVERZOO_DATABASE_URL is not a database URL ({error}); "
                "use e.g. sqlite:///path/to/saverzoo.db or postgresql+psycopg://user@host/db"
            ) from error
        # Only these have their driver installed and their dialect tested; any other scheme
        # would fail later, at the first connection, with an import error.
        if url.drivername not in DATABASE_SCHEMES:
            raise ValueError(
                f"SAVERZOO_DATABASE_URL scheme {url.drivername!r} is not supported; use "
                f"{' or '.join(SUPPORTED_SCHEMES)} (e.g. sqlite:///path/to/saverzoo.db or "
                "postgresql+psycopg://user@host/db)"
            )
        return value

    @field_validator("search_budgets")
    @classmethod
    def _non_negative_budgets(cls, value: list[float]) -> list[float]:
        for budget in value:
            if not 0 <= budget <= 100 or abs(round(budget * 100) - budget * 100) > 1e-6:
                raise ValueError(
                    "search budgets are accuracy drops in points, from 0 to 100, with two "
                    f"decimals at most (not {budget})"
                )
        return sorted(set(value))

    @field_validator("holdout_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError("holdout_fraction must lie strictly between 0 and 1")
        return value

    @property
    def database_display(self) -> str:
        """The database URL with any password hidden, safe to print."""
        return database_display(self.database_url)  # the module's function

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env, no secrets folder
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once at the entry point."""
    return Settings()


def shard_cache_folder(settings: Settings) -> Path:
    return settings.shard_cache_dir or data_dir() / "shard-cache"
