"""What the input guard (app/input_guard.py) and the batch's serialisability check cost.

Each figure beside a baseline doing the same work without the guard, in the same run:

- a ``/locate``-style GET with a clean query: a bare ASGI app, then the same app inside
  ``InputGuard`` (µs a request);
- a 1 KB JSON write body and a 100,000-point ``/locate/batch`` JSON body through the guard (which
  scans the bytes and replays the body) beside the bare app;
- ``grids.batch._check_serialisable`` on the parsed 100,000 points beside the ``orjson.loads``
  that parses them anyway.

Run: ``.venv/bin/python -m bench.input_guard``
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import orjson

from app.input_guard import InputGuard
from bench.common import SEED, best_of
from grids.batch import _check_serialisable


async def _bare(scope: Any, receive: Any, send: Any) -> None:
    if scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _drive(app: Any, scope: dict[str, Any], body: bytes, n: int) -> float:
    """Seconds per request for ``n`` requests of ``scope`` with ``body``."""

    async def one() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            return None

        await app(scope, receive, send)

    async def loop() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await one()
        return (time.perf_counter() - t0) / n

    return asyncio.run(loop())


def main() -> None:
    guarded = InputGuard(_bare)
    get = {"type": "http", "method": "GET", "path": "/locate",
           "query_string": b"lon=120.0752&lat=29.3051&crs=EPSG%3A4326", "headers": []}
    json_headers = [(b"content-type", b"application/json")]
    post = {"type": "http", "method": "POST", "path": "/incidents", "query_string": b"",
            "headers": json_headers}
    small = orjson.dumps({"source": "hotline_12345", "external_id": "x" * 20,
                          "category": "E0101", "description": "路灯不亮" * 100,
                          "lon": 120.07, "lat": 29.3})
    rng = np.random.default_rng(SEED)  # Yiwu's box; no database needed for this bench
    xs, ys = rng.uniform(119.9, 120.3, 100_000), rng.uniform(29.1, 29.5, 100_000)
    big = orjson.dumps([[float(x), float(y)] for x, y in zip(xs, ys, strict=True)])
    rows = []
    for name, scope, body, n in (("GET /locate (query)", get, b"", 20_000),
                                 ("POST 1 KB JSON", post, small, 20_000),
                                 ("POST 100k-point batch JSON", {**post, "path": "/locate/batch"},
                                  big, 20)):
        # interleaved, best of 3 each (the machine is shared)
        base = with_guard = float("inf")
        for _ in range(3):
            base = min(base, _drive(_bare, scope, body, n))
            with_guard = min(with_guard, _drive(guarded, scope, body, n))
        rows.append((name, base, with_guard))
    doc = orjson.loads(big)
    parse, _, _ = best_of(lambda: orjson.loads(big))
    check, _, _ = best_of(lambda: _check_serialisable(doc))
    print(f"{'case':32} {'bare':>12} {'guarded':>12} {'added':>12}")
    for name, base, with_guard in rows:
        print(f"{name:32} {base * 1e6:10.1f}µs {with_guard * 1e6:10.1f}µs "
              f"{(with_guard - base) * 1e6:10.1f}µs")
    print(f"batch of 100k: orjson.loads {parse * 1e3:.1f} ms, "
          f"_check_serialisable {check * 1e3:.1f} ms ({len(big) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
