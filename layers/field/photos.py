"""Photos from the field: stored by the server, content-addressed, with their EXIF read once.

- **Content-addressed.** A photo's name is the SHA-256 of its bytes, so a resent upload (weak
  signal, a queue replayed after a restart) stores nothing new and answers the same name.
- **Checked from the bytes**, not from the name or the declared type: JPEG, PNG or WebP that
  Pillow can open, at most ``max_bytes`` and ``max_pixels``.
- **EXIF kept**: the original bytes are stored untouched; the position (GPS IFD) and the time
  taken (DateTimeOriginal with OffsetTimeOriginal, else the city's offset) are also written to
  ``field_photo`` for the evidence checks (:mod:`layers.field.evidence`).
- **Thumbnails** (JPEG, ``thumb_px`` on the long side, orientation applied) for the phone's lists.
- **Where**: a local directory (default) or an S3-compatible object store (boto3), one
  :class:`PhotoStore` interface.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, text

from grids.access import Permission, Principal
from grids.errors import GridError, RegionNotFound

SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))
FORMAT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
URL_PREFIX = "/field/photos/"


class PhotoError(GridError):
    code = "invalid_photo"


class PhotoTooLarge(PhotoError):
    code = "photo_too_large"


class PhotoNotFound(RegionNotFound):
    code = "photo_not_found"


class PhotoStore(Protocol):
    """Where the bytes live: keys are ``photos/ab/<sha256>`` and ``thumbs/ab/<sha256>.jpg``."""

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes | None: ...


class LocalStore:
    """A directory on the server's disk (written atomically: temp file, then rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{id(data)}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.exists() else None


class S3Store:
    """An S3-compatible object store (AWS, MinIO, Ceph, OSS in S3 mode) through boto3."""

    def __init__(self, bucket: str, *, endpoint_url: str | None = None,
                 region: str = "us-east-1", access_key_id: str | None = None,
                 secret_access_key: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                                   aws_access_key_id=access_key_id,
                                   aws_secret_access_key=secret_access_key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None


def store_from(settings: Any) -> PhotoStore:
    """The store the photo settings (:class:`app.settings.PhotoSettings`) name."""
    if settings.photo_store == "s3":
        return S3Store(settings.photo_s3_bucket, endpoint_url=settings.photo_s3_endpoint_url,
                       region=settings.photo_s3_region,
                       access_key_id=settings.photo_s3_access_key_id,
                       secret_access_key=settings.photo_s3_secret_access_key)
    return LocalStore(settings.photo_dir)


def photo_key(sha: str) -> str:
    return f"photos/{sha[:2]}/{sha}"


def thumb_key(sha: str) -> str:
    return f"thumbs/{sha[:2]}/{sha}.jpg"


def url_of(sha: str) -> str:
    return URL_PREFIX + sha


def sha_of_url(ref: str) -> str | None:
    """The SHA-256 in a photo reference (a bare hash or ``/field/photos/<sha>``)."""
    sha = ref.removeprefix(URL_PREFIX).strip().lower()
    return sha if len(sha) == 64 and all(c in "0123456789abcdef" for c in sha) else None


@dataclass
class Exif:
    lon: float | None
    lat: float | None
    taken_at: datetime | None
    raw: dict[str, Any]


def _ratio(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        num, den = v
        return float(num) / float(den)


def _dms(values: Any, ref: Any) -> float | None:
    try:
        d, m, s = (_ratio(v) for v in values)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    deg = d + m / 60 + s / 3600
    ref_s = ref.decode() if isinstance(ref, bytes) else str(ref or "")
    return -deg if ref_s.strip().upper() in ("S", "W") else deg


def city_offset(tz: tzinfo, at: datetime | None = None) -> str:
    """The UTC offset of ``tz`` at ``at`` (default now) as EXIF writes it: ``'+08:00'``.

    >>> from zoneinfo import ZoneInfo
    >>> city_offset(ZoneInfo("Asia/Kolkata"), datetime(2026, 1, 1, tzinfo=UTC))
    '+05:30'
    """
    minutes = int(((at or datetime.now(UTC)).astimezone(tz).utcoffset() or timedelta()).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _offset(value: Any, default: str) -> timezone:
    s = (value.decode() if isinstance(value, bytes) else str(value or "")).strip("\x00 ") \
        or default
    try:
        sign = -1 if s.startswith("-") else 1
        hh, mm = s.lstrip("+-").split(":")
        return timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))
    except ValueError:
        return _offset(default, "+00:00") if s != default else UTC


def read_exif(image: Any, *, default_offset: str = "+00:00") -> Exif:
    """Position (WGS84, as phones write it) and time taken from a Pillow image's EXIF."""
    exif = image.getexif()
    sub = exif.get_ifd(0x8769)  # Exif IFD: DateTimeOriginal, OffsetTimeOriginal
    gps = exif.get_ifd(0x8825)
    taken = None
    stamp = sub.get(36867) or exif.get(306)  # DateTimeOriginal, else DateTime
    if stamp:
        s = stamp.decode() if isinstance(stamp, bytes) else str(stamp)
        try:
            naive = datetime.strptime(s.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
            taken = naive.replace(tzinfo=_offset(sub.get(36881), default_offset))
        except ValueError:
            taken = None
    lat = _dms(gps.get(2), gps.get(1)) if gps.get(2) else None
    lon = _dms(gps.get(4), gps.get(3)) if gps.get(4) else None
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        lat = lon = None
    raw = {"make": _text(exif.get(271)), "model": _text(exif.get(272)),
           "datetime_original": _text(stamp), "offset": _text(sub.get(36881)),
           "gps": None if lat is None else [lon, lat]}
    return Exif(lon=lon, lat=lat, taken_at=taken, raw={k: v for k, v in raw.items() if v})


def _text(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode(errors="replace").strip("\x00 ")
    return v


@dataclass
class Checked:
    sha256: str
    content_type: str
    width: int
    height: int
    exif: Exif
    thumb: bytes


def check(data: bytes, *, max_bytes: int, max_pixels: int, thumb_px: int,
          default_offset: str = "+00:00") -> Checked:
    """Validate an upload from its bytes and make its thumbnail; raises :class:`PhotoError`."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise PhotoError("The photo is empty.", detail={"field": "body"})
    if len(data) > max_bytes:
        raise PhotoTooLarge(f"A photo may have at most {max_bytes // 1_000_000} MB.",
                            detail={"field": "body", "bytes": len(data), "max_bytes": max_bytes})
    head = data[:12]
    sniffed = next((t for sig, t in SIGNATURES if head.startswith(sig)), None)
    if sniffed is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        sniffed = "image/webp"
    if sniffed is None:
        raise PhotoError("Only JPEG, PNG or WebP photos are accepted.",
                         detail={"field": "body", "expected": list(FORMAT_TYPES.values())})
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > max_pixels:
                raise PhotoTooLarge("The photo has too many pixels.",
                                    detail={"field": "body", "max_pixels": max_pixels})
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            if FORMAT_TYPES.get(image.format or "") != sniffed:
                raise PhotoError("The photo's content does not match its format.",
                                 detail={"field": "body"})
            exif = read_exif(image, default_offset=default_offset)
            width, height = image.size
            small = ImageOps.exif_transpose(image) or image
            small = small.convert("RGB")
            small.thumbnail((thumb_px, thumb_px))
            out = io.BytesIO()
            small.save(out, "JPEG", quality=80)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhotoError("The photo could not be read.",
                         detail={"field": "body", "reason": str(exc)[:200]}) from exc
    return Checked(sha256=hashlib.sha256(data).hexdigest(), content_type=sniffed, width=width,
                   height=height, exif=exif, thumb=out.getvalue())


def save(conn: Connection, store: PhotoStore, data: bytes, *, principal: Principal,
         max_bytes: int, max_pixels: int = 60_000_000, thumb_px: int = 320,
         default_offset: str = "+00:00") -> dict[str, Any]:
    """Store a photo (bytes first, then its row); the same bytes again change nothing."""
    principal.require(Permission.INCIDENTS_HANDLE)
    c = check(data, max_bytes=max_bytes, max_pixels=max_pixels, thumb_px=thumb_px,
              default_offset=default_offset)
    store.put(photo_key(c.sha256), data, c.content_type)
    store.put(thumb_key(c.sha256), c.thumb, "image/jpeg")
    created = conn.execute(text(
        "INSERT INTO field_photo (sha256, content_type, bytes, width, height, taken_at, geom, "
        "exif, uploaded_by) VALUES (:sha, :ct, :n, :w, :h, :taken, CASE WHEN "
        "CAST(:lon AS float8) IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) "
        "END, CAST(:exif AS jsonb), :by) ON CONFLICT (sha256) DO NOTHING RETURNING sha256"),
        {"sha": c.sha256, "ct": c.content_type, "n": len(data), "w": c.width, "h": c.height,
         "taken": c.exif.taken_at, "lon": c.exif.lon, "lat": c.exif.lat,
         "exif": orjson.dumps(c.exif.raw, default=str).decode(), "by": principal.name}
    ).scalar() is not None
    return {"sha256": c.sha256, "url": url_of(c.sha256), "thumb_url": url_of(c.sha256) + "/thumb",
            "content_type": c.content_type, "bytes": len(data), "width": c.width,
            "height": c.height, "taken_at": c.exif.taken_at, "lon": c.exif.lon,
            "lat": c.exif.lat, "created": created}


def known(conn: Connection, shas: list[str]) -> dict[str, dict[str, Any]]:
    """The stored photos among ``shas``, with their EXIF position and time."""
    rows = conn.execute(text(
        "SELECT sha256, taken_at, ST_X(geom) AS lon, ST_Y(geom) AS lat, uploaded_by "
        "FROM field_photo WHERE sha256 = ANY(:s)"), {"s": shas}).mappings().all()
    return {r["sha256"]: dict(r) for r in rows}


def link(conn: Connection, shas: list[str], incident_id: int, event_id: int) -> None:
    if shas:
        conn.execute(text(
            "INSERT INTO field_photo_use (sha256, incident_id, event_id) "
            "SELECT unnest(CAST(:s AS text[])), :i, :e ON CONFLICT DO NOTHING"),
            {"s": shas, "i": incident_id, "e": event_id})


def fetch(conn: Connection, store: PhotoStore, sha: str, *, thumb: bool,
          principal: Principal) -> tuple[bytes, str]:
    """A photo's bytes, for its uploader or anyone who sees a case showing it."""
    principal.require(Permission.INCIDENTS_READ)
    row = conn.execute(text(
        "SELECT p.content_type, p.uploaded_by, "
        "(SELECT array_agg(DISTINCT i.region_code) FROM field_photo_use u "
        " JOIN incident i ON i.id = u.incident_id WHERE u.sha256 = p.sha256) AS regions "
        "FROM field_photo p WHERE p.sha256 = :s"), {"s": sha}).mappings().first()
    scope = principal.locate_scope()
    if row is None or not (row["uploaded_by"] == principal.name
                           or any(scope.covers(r) for r in row["regions"] or [])):
        raise PhotoNotFound(f"No photo {sha[:12]}… you may see.",
                            detail={"field": "sha256", "value": sha[:64]})
    data = store.get(thumb_key(sha) if thumb else photo_key(sha))
    if data is None:
        raise PhotoNotFound("The photo's bytes are missing from the store.",
                            detail={"field": "sha256", "value": sha[:64]})
    return data, "image/jpeg" if thumb else row["content_type"]
