"""Photos with crafted EXIF for the field app's tests (Pillow + piexif)."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timedelta, timezone

CITY = timezone(timedelta(hours=8))


def _dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = round(((value - d) * 60 - m) * 60 * 10_000)
    return ((d, 1), (m, 1), (s, 10_000))


def jpeg(*, lon: float | None = None, lat: float | None = None,
         taken_at: datetime | None = None, offset: bool = True, seed: int = 0,
         size: tuple[int, int] = (640, 480)) -> bytes:
    """A JPEG whose EXIF says where (GPS) and when (DateTimeOriginal) it was taken.

    ``seed`` changes the pixels, so two photos with the same EXIF still differ in their hash.
    """
    import piexif
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (40 + seed % 200, 120, 90))
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 20, 20 + seed % 300, 200], fill=(230, 200, 40))
    exif: dict = {"0th": {piexif.ImageIFD.Make: b"TestPhone", piexif.ImageIFD.Model: b"T1"},
                  "Exif": {}, "GPS": {}}
    if taken_at is not None:
        local = taken_at.astimezone(CITY)
        exif["Exif"][piexif.ExifIFD.DateTimeOriginal] = local.strftime("%Y:%m:%d %H:%M:%S").encode()
        if offset:
            exif["Exif"][piexif.ExifIFD.OffsetTimeOriginal] = b"+08:00"
    if lon is not None and lat is not None:
        exif["GPS"] = {piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
                       piexif.GPSIFD.GPSLatitude: _dms(lat),
                       piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
                       piexif.GPSIFD.GPSLongitude: _dms(lon)}
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, exif=piexif.dump(exif))
    return out.getvalue()


# -- the tests ---------------------------------------------------------------------------------
import socket  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from datetime import UTC  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy import Connection, text  # noqa: E402

from grids.access import Principal  # noqa: E402
from layers.field import photos  # noqa: E402

LIMITS = {"max_bytes": 2_000_000, "max_pixels": 20_000_000, "thumb_px": 320}


def test_exif_position_and_time_are_read() -> None:
    at = datetime(2026, 11, 3, 9, 30, 5, tzinfo=UTC)
    c = photos.check(jpeg(lon=120.07512, lat=29.30555, taken_at=at), **LIMITS)
    assert c.content_type == "image/jpeg"
    assert c.exif.lon == pytest.approx(120.07512, abs=1e-6)
    assert c.exif.lat == pytest.approx(29.30555, abs=1e-6)
    assert c.exif.taken_at == at
    assert c.exif.raw["make"] == "TestPhone"


def test_exif_time_without_offset_is_the_city_s() -> None:
    at = datetime(2026, 11, 3, 9, 30, 5, tzinfo=UTC)
    c = photos.check(jpeg(taken_at=at, offset=False), **LIMITS, default_offset="+08:00")
    assert c.exif.taken_at == at  # written as 17:30:05 local, read back as +08:00


def test_south_and_west_are_negative() -> None:
    c = photos.check(jpeg(lon=-70.5, lat=-33.25), **LIMITS)
    assert (round(c.exif.lon, 4), round(c.exif.lat, 4)) == (-70.5, -33.25)


def test_no_exif_is_kept_as_unknown() -> None:
    c = photos.check(jpeg(), **LIMITS)
    assert (c.exif.lon, c.exif.lat, c.exif.taken_at) == (None, None, None)


def test_thumbnail_is_small_jpeg() -> None:
    from PIL import Image

    c = photos.check(jpeg(size=(1600, 1200)), **LIMITS)
    with Image.open(io.BytesIO(c.thumb)) as t:
        assert t.format == "JPEG" and max(t.size) == 320


@pytest.mark.parametrize(("data", "code"), [
    (b"", "invalid_photo"),
    (b"GIF89a" + b"\0" * 100, "invalid_photo"),
    (b"\xff\xd8\xff\xe0" + b"\0" * 100, "invalid_photo"),  # a JPEG header, then nothing
    (b"<html>not an image</html>", "invalid_photo"),
])
def test_type_is_sniffed_from_the_bytes(data: bytes, code: str) -> None:
    with pytest.raises(photos.PhotoError) as err:
        photos.check(data, **LIMITS)
    assert err.value.code == code


def test_size_is_limited() -> None:
    data = jpeg(size=(2000, 1500))
    with pytest.raises(photos.PhotoTooLarge):
        photos.check(data, **{**LIMITS, "max_bytes": len(data) - 1})
    with pytest.raises(photos.PhotoTooLarge):
        photos.check(data, **{**LIMITS, "max_pixels": 1_000_000})


def test_png_is_accepted() -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (50, 40), "red").save(out, "PNG")
    assert photos.check(out.getvalue(), **LIMITS).content_type == "image/png"


def test_sha_of_url() -> None:
    sha = "a" * 64
    assert photos.sha_of_url(sha) == sha
    assert photos.sha_of_url("/field/photos/" + sha) == sha
    assert photos.sha_of_url("/field/photos/xyz") is None


WORKER = Principal.system("user:nobody")


def _save_twice(conn: Connection, store: photos.PhotoStore) -> None:
    data = jpeg(lon=120.1, lat=29.3, taken_at=datetime(2026, 11, 3, 1, 0, tzinfo=UTC), seed=7)
    first = photos.save(conn, store, data, principal=WORKER, **LIMITS)
    again = photos.save(conn, store, data, principal=WORKER, **LIMITS)
    assert first["created"] and not again["created"]
    assert first["sha256"] == again["sha256"] == hashlib.sha256(data).hexdigest()
    assert store.get(photos.photo_key(first["sha256"])) == data  # EXIF kept: the bytes as sent
    assert store.get(photos.thumb_key(first["sha256"]))[:3] == b"\xff\xd8\xff"
    row = conn.execute(text("SELECT ST_X(geom), ST_Y(geom), taken_at, bytes FROM field_photo "
                            "WHERE sha256 = :s"), {"s": first["sha256"]}).one()
    assert row[0] == pytest.approx(120.1, abs=1e-6) and row[1] == pytest.approx(29.3, abs=1e-6)
    assert row[2] == datetime(2026, 11, 3, 1, 0, tzinfo=UTC) and row[3] == len(data)
    # The uploader may fetch it back; no one else sees it until a case shows it.
    assert photos.fetch(conn, store, first["sha256"], thumb=False, principal=WORKER)[0] == data


def test_local_store_is_content_addressed(conn: Connection, tmp_path) -> None:
    store = photos.LocalStore(tmp_path)
    _save_twice(conn, store)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 2 and files[0].startswith("photos/") and files[1].startswith("thumbs/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1: a real HTTP server, not a mock decorator."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_object_store_through_boto3(conn: Connection, s3_server: str) -> None:
    from app.settings import PhotoSettings

    settings = PhotoSettings(photo_store="s3", photo_s3_bucket="citygrid-photos",
                             photo_s3_endpoint_url=s3_server, photo_s3_access_key_id="test",
                             photo_s3_secret_access_key="test-secret")
    store = photos.store_from(settings)
    assert isinstance(store, photos.S3Store)
    store.client.create_bucket(Bucket="citygrid-photos")
    _save_twice(conn, store)
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket="citygrid-photos")["Contents"]]
    assert len(keys) == 2
    assert store.get("photos/00/" + "0" * 64) is None


def test_s3_needs_a_bucket() -> None:
    from pydantic import ValidationError

    from app.settings import PhotoSettings

    with pytest.raises(ValidationError):
        PhotoSettings(photo_store="s3")
