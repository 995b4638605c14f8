"""Settings, read from the environment (prefix ``CITYGRID_``) and an optional ``.env`` file.

One class per concern; :func:`get_settings` builds the default and tests build variants and pass
them to :func:`app.main.create_app`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Literal, TypeVar, cast

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from grids.upload_limits import UploadLimits

_ENV = SettingsConfigDict(env_prefix="CITYGRID_", env_file=".env", extra="ignore")
# The private development cluster (app/devdb.py): the API runs as the restricted role
# citygrid_app; migrations run as the owner citygrid.
_DEV_PORT = os.environ.get("CITYGRID_PGPORT", "54329")  # app/devdb.py's port
DEV_DATABASE_URL = f"postgresql+psycopg://citygrid_app@127.0.0.1:{_DEV_PORT}/citygrid"
DEV_MIGRATION_URL = f"postgresql+psycopg://citygrid@127.0.0.1:{_DEV_PORT}/citygrid"
DEV_SECRET = "development-only-secret-do-not-use-in-production"


class DatabaseSettings(BaseSettings):
    """Where PostGIS is. The default is the private cluster that ``make run`` starts."""

    model_config = _ENV

    database_url: str = DEV_DATABASE_URL
    migration_url: str | None = None  # the owner; defaults to the dev owner or database_url
    pool_size: int = Field(10, ge=1, le=100)
    statement_timeout_ms: int = Field(30_000, ge=100)
    # Connections beyond pool_size for the background work (locator reloads, the coverage
    # worker); requests are held to pool_size by ApiSettings.max_in_flight (app/backpressure.py).
    pool_overflow: int = Field(5, ge=0, le=100)
    pool_timeout_s: float = Field(5.0, gt=0, le=60)  # then a 503 server_busy, not a 30 s stall

    @field_validator("database_url", "migration_url")
    @classmethod
    def _postgres_only(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("postgresql://", "postgresql+psycopg://")):
            raise ValueError("CityGrid needs PostgreSQL + PostGIS (postgresql+psycopg://...)")
        return v.replace("postgresql://", "postgresql+psycopg://", 1)

    @property
    def owner_url(self) -> str:
        """Where migrations run: the owner role, not the restricted application role."""
        if self.migration_url:
            return self.migration_url
        if self.database_url == DEV_DATABASE_URL:
            return DEV_MIGRATION_URL
        return self.database_url


class ReplicaSettings(BaseSettings):
    """Streaming hot standbys for the heavy reads (app/replicas.py, docs/scale.md "Read replicas").

    ``CITYGRID_REPLICA_URLS``: a comma list of standby URLs (the application role, as
    ``database_url``); none by default, and then every read goes to the primary.
    ``CITYGRID_REPLICA_MAX_LAG_S``: a standby further behind than this is skipped.
    ``CITYGRID_REPLICA_CHECK_S``: how long a standby's measured lag is trusted before it is
    measured again (in the background: a request never waits for the check).
    """

    model_config = _ENV

    replica_urls: Annotated[list[str], NoDecode] = []
    replica_max_lag_s: float = Field(5.0, gt=0, le=3600)
    replica_check_s: float = Field(1.0, gt=0, le=60)

    @field_validator("replica_urls", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.split(",")
        if isinstance(v, list | tuple):
            urls = [str(u).strip() for u in v if str(u).strip()]
            for u in urls:
                if not u.startswith(("postgresql://", "postgresql+psycopg://")):
                    raise ValueError("CITYGRID_REPLICA_URLS: each standby is a "
                                     "postgresql+psycopg:// URL")
            return [u.replace("postgresql://", "postgresql+psycopg://", 1) for u in urls]
        return v


class CitySettings(BaseSettings):
    """Tolerances of city work. The city itself (code, name, time zone, metric CRS, phone
    pattern) is its database's ``city_profile`` (``grids.city``; ``citygrid city show|set``), so
    SQL and every process read the same one."""

    model_config = _ENV

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
    # a folder for the locator's snapshot file (cold start without a rebuild: app/locator_service.py);
    # None: every process builds from SQL
    locator_snapshot_dir: str | None = None
    # how often the background worker recomputes patrol coverage after new fixes (0: never)
    coverage_refresh_s: float = Field(30.0, ge=0)
    # how often the plan worker looks for scheduled plan activations whose open work (cases,
    # call-ups, address book) is due to move (app/plan_worker.py; 0: never)
    plan_work_s: float = Field(15.0, ge=0)
    # Back-pressure (app/backpressure.py): requests that use the database at once per worker
    # (0: the pool size), how many may wait for a slot and how long, then a 503 + Retry-After.
    max_in_flight: int = Field(0, ge=0, le=1000)
    queue_max: int = Field(256, ge=0, le=100_000)
    queue_wait_s: float = Field(5.0, ge=0, le=120)
    retry_after_s: int = Field(2, ge=1, le=3600)


class AuthSettings(BaseSettings):
    """Tokens, sessions, keys and limits."""

    model_config = _ENV

    secret_key: str = DEV_SECRET
    token_minutes: int = Field(15, ge=1, le=24 * 60)
    session_hours: int = Field(8, ge=1, le=72)
    cookie_secure: bool | None = None  # None: secure in production, not in development
    login_attempts: int = Field(5, ge=1, le=100)  # failures per username+IP ...
    login_window_s: int = Field(300, ge=1)  # ... within this window, then 429
    max_body_bytes: int = Field(1_000_000, ge=1_000)
    max_batch_bytes: int = Field(256_000_000, ge=1_000)
    # Failed logins from one address (any usernames) within login_window_s, then 429.
    login_attempts_per_address: int = Field(20, ge=1, le=10_000)
    # Reverse proxies whose X-Forwarded-For is believed (CIDRs); none by default.
    trusted_proxies: list[str] = []
    # Open311 GET requests without credentials: off (credentials needed) unless this is set.
    open311_public_feed: bool = False

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for cidr in v:
            ipaddress.ip_network(cidr.strip(), strict=False)  # ValueError names the bad one
        return [c.strip() for c in v]


class UploadSettings(BaseSettings):
    """Limits on uploaded files (bulk intake, rosters, plans): see grids/upload_limits.py."""

    model_config = _ENV

    upload_max_uncompressed_bytes: int = Field(64_000_000, ge=1_000)
    upload_max_zip_members: int = Field(1_000, ge=1)
    upload_max_rows: int = Field(200_000, ge=1)
    upload_max_seconds: float = Field(30.0, gt=0)
    upload_max_features: int = Field(20_000, ge=1)
    upload_max_vertices_per_feature: int = Field(20_000, ge=4)
    upload_max_vertices: int = Field(2_000_000, ge=4)

    def limits(self) -> UploadLimits:
        return UploadLimits(
            max_uncompressed_bytes=self.upload_max_uncompressed_bytes,
            max_zip_members=self.upload_max_zip_members, max_rows=self.upload_max_rows,
            max_seconds=self.upload_max_seconds, max_features=self.upload_max_features,
            max_vertices_per_feature=self.upload_max_vertices_per_feature,
            max_vertices=self.upload_max_vertices)


class PortalSettings(BaseSettings):
    """The portal's optional base map (map_ui/portal.py): ``CITYGRID_BASEMAP_URL`` (none: the
    city's own outlines on a plain background) and ``CITYGRID_BASEMAP_CRS`` (WGS84 or GCJ02)."""

    model_config = _ENV

    basemap_url: str | None = None
    basemap_crs: Literal["WGS84", "GCJ02"] = "WGS84"

    @field_validator("basemap_url", mode="before")
    @classmethod
    def _blank_is_none(cls, v: object) -> object:
        return (v.strip() or None) if isinstance(v, str) else v

    @field_validator("basemap_crs", mode="before")
    @classmethod
    def _crs_name(cls, v: object) -> object:
        if not isinstance(v, str):
            return v
        crs = (v.strip() or "WGS84").upper().replace("-", "")
        if crs not in ("WGS84", "GCJ02"):
            raise ValueError(f"CITYGRID_BASEMAP_CRS must be WGS84 or GCJ02, not {crs!r}")
        return crs


_S = TypeVar("_S", bound=BaseSettings)


def _from_env(cls: type[_S]) -> Callable[[], _S]:
    """``cls`` as a default factory: it reads its fields from the environment, so takes no
    arguments (which the type checker cannot tell without pydantic's plugin)."""
    return cast("Callable[[], _S]", cls)


class Settings(BaseSettings):
    """Everything, grouped by concern."""

    model_config = _ENV

    db: DatabaseSettings = Field(default_factory=_from_env(DatabaseSettings))
    city: CitySettings = Field(default_factory=_from_env(CitySettings))
    api: ApiSettings = Field(default_factory=_from_env(ApiSettings))
    auth: AuthSettings = Field(default_factory=_from_env(AuthSettings))
    upload: UploadSettings = Field(default_factory=_from_env(UploadSettings))
    portal: PortalSettings = Field(default_factory=_from_env(PortalSettings))
    replicas: ReplicaSettings = Field(default_factory=_from_env(ReplicaSettings))

    @model_validator(mode="after")
    def _no_dev_secret_in_production(self) -> Settings:
        if self.api.mode == "production":
            key = self.auth.secret_key
            if key == DEV_SECRET or len(key) < 32:
                raise ValueError(
                    "Refusing to start in production with a development or short secret: set "
                    "CITYGRID_SECRET_KEY to at least 32 random characters."
                )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()


class PhotoSettings(BaseSettings):
    """Where the field app's photos are kept (issue: the grid worker's phone).

    ``local`` (default): a directory on the server, content-addressed by SHA-256. ``s3``: an
    S3-compatible object store through boto3 (endpoint, bucket and keys below).
    """

    model_config = _ENV

    photo_store: Literal["local", "s3"] = "local"
    photo_dir: str = "var/photos"
    photo_max_bytes: int = Field(15_000_000, ge=10_000, le=100_000_000)
    photo_max_pixels: int = Field(60_000_000, ge=10_000)
    photo_thumb_px: int = Field(320, ge=64, le=2048)
    photo_s3_bucket: str | None = None
    photo_s3_endpoint_url: str | None = None
    photo_s3_region: str = "us-east-1"
    photo_s3_access_key_id: str | None = None
    photo_s3_secret_access_key: str | None = None
    # EXIF times without OffsetTimeOriginal are the phone's local time: by default the offset of
    # the city profile's time zone at upload; set to override (e.g. "+08:00").
    photo_exif_offset: str | None = Field(None, pattern=r"^[+-]\d{2}:\d{2}$")

    @model_validator(mode="after")
    def _bucket_for_s3(self) -> PhotoSettings:
        if self.photo_store == "s3" and not self.photo_s3_bucket:
            raise ValueError("CITYGRID_PHOTO_STORE=s3 needs CITYGRID_PHOTO_S3_BUCKET.")
        return self


class PackSettings(BaseSettings):
    """Where the monthly meeting packs (``POST /analysis/pack``) are kept, and for how long: when a
    new one is built (and by ``citygrid packs prune``), the packs older than ``pack_max_age_h``
    hours are removed, and the oldest beyond the ``pack_max_count`` newest."""

    model_config = _ENV

    pack_dir: str = "var/packs"
    pack_max_age_h: float = Field(72.0, gt=0, le=24 * 366)
    pack_max_count: int = Field(200, ge=1, le=100_000)


class BulkSettings(BaseSettings):
    """Where ``citygrid bulk`` runs its partitions (layers/bulk): a Dask ``distributed``
    scheduler (``CITYGRID_DASK_SCHEDULER=tcp://host:8786``) on a real cluster, else a
    ``LocalCluster`` of ``CITYGRID_DASK_WORKERS`` processes (one thread each) on this machine."""

    model_config = _ENV

    dask_scheduler: str | None = None
    dask_workers: int = Field(2, ge=1, le=256)
    dask_worker_memory: str = "2GiB"  # per local worker; Dask spills, then pauses, past it
