"""Settings, read from the environment (prefix ``CITYGRID_``) and an optional ``.env`` file.

One class per concern; :func:`get_settings` builds the default and tests build variants and pass
them to :func:`app.main.create_app`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_ENV = SettingsConfigDict(env_prefix="CITYGRID_", env_file=".env", extra="ignore")
DEV_DATABASE_URL = "postgresql+psycopg://citygrid@127.0.0.1:54329/citygrid"


class DatabaseSettings(BaseSettings):
    """Where PostGIS is. The default is the private cluster that ``make run`` starts."""

    model_config = _ENV

    database_url: str = DEV_DATABASE_URL
    pool_size: int = Field(10, ge=1, le=100)
    statement_timeout_ms: int = Field(30_000, ge=100)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, v: str) -> str:
        if not v.startswith(("postgresql://", "postgresql+psycopg://")):
            raise ValueError("CityGrid needs PostgreSQL + PostGIS (postgresql+psycopg://...)")
        return v.replace("postgresql://", "postgresql+psycopg://", 1)


class CitySettings(BaseSettings):
    """The city the deployment serves."""

    model_config = _ENV

    city_code: str = "330782000000"
    projected_srid: int = 4549  # CGCS2000 3-degree Gauss-Krüger CM 120E, for metric work
    topology_tolerance_m2: float = Field(1.0, ge=0)
    max_outside_m: float = Field(30_000, ge=0)


class ApiSettings(BaseSettings):
    """The HTTP service."""

    model_config = _ENV

    mode: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    page_size_max: int = Field(1000, ge=1, le=100_000)
    cors_origins: list[str] = []
    batch_raster: bool = True  # build the ~10 m lookup raster for batch location


class Settings(BaseSettings):
    """Everything, grouped by concern."""

    model_config = _ENV

    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    city: CitySettings = Field(default_factory=CitySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)


@lru_cache
def get_settings() -> Settings:
    return Settings()
