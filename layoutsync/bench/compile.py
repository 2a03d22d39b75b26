"""Compile cost against the schema pass it is guarded by, measured in the same run.

Goals (issue 3): compiling a 16-host grid, validation excluded, costs <= 0.2x of
one uncached jsonschema validation of its output; a cached re-validation of the
same body costs <= 0.01x of it. The baseline is a plain jsonschema pass over the
whole body (no layoutsync code in it). Also reported: validating a body in which
one host joined, the case the piecewise cache is for.
"""

from __future__ import annotations

import itertools

import jsonschema

from .._resources import load_schema
from ..compile import compile_unchecked
from ..spec import load_spec
from ..validate import check_request, clear_cache
from . import BenchOptions, Figure, measure, median_seconds

__all__ = ["GRID_16", "run"]

#: A 16-host grid spec with everything a body can carry (watermark, background, options).
GRID_16 = {
    "instanceId": "bench-grid-16",
    "input": {"channel": "bench", "token": "bench-input-token"},
    "output": {
        "channel": "bench-live",
        "uid": 9000,
        "token": "bench-output-token",
        "video": {"width": 1280, "height": 720, "fps": 15, "codec": "H264", "bitrate": 1500},
        "audio": {"profile": "AUDIO_PROFILE_MUSIC_STANDARD"},
    },
    "canvas": {"color": "#101010", "backgroundImage": "https://cdn.example.com/bg.jpg"},
    "placeholderImage": "https://cdn.example.com/offline.png",
    "watermarks": [
        {
            "imageUrl": "https://cdn.example.com/logo.png",
            "x": 1140,
            "y": 20,
            "width": 120,
            "height": 120,
        }
    ],
    "layout": {"template": "grid", "gap": 8, "padding": 16, "aspect": "16:9"},
}

_HOSTS = tuple(range(101, 117))


def run(options: BenchOptions) -> list[Figure]:
    spec = load_spec(GRID_16)
    body = compile_unchecked(spec, _HOSTS).body
    assert body is not None

    def compile_once() -> object:
        return compile_unchecked(spec, _HOSTS)

    schema = load_schema("transcoder-request")
    plain = jsonschema.validators.validator_for(schema)(schema)

    def uncached() -> object:
        return list(plain.iter_errors(body))

    joiner = itertools.count(1000)

    def one_host_joined() -> object:
        # Every call validates a body never seen before, which shares all but one host.
        return check_request(compile_unchecked(spec, (*_HOSTS[:-1], next(joiner))).body or {})

    def cached() -> object:
        return check_request(body)

    budget = 0.1 if options.quick else 0.4
    rounds = 7 if options.quick else 21
    # The uncached pass includes clear_cache(), a dict clear: noise next to a schema pass.
    uncached_s = median_seconds(uncached, rounds=rounds, inner=3 if options.quick else 10)
    compile_s = measure(compile_once, budget=budget, rounds=rounds)
    clear_cache()
    check_request(body)  # warm the cache for the cached and the one-host figures
    cached_s = measure(cached, budget=budget, rounds=rounds)
    joined_s = median_seconds(one_host_joined, rounds=rounds, inner=5) - compile_s

    details: dict[str, float | int | str] = {
        "hosts": len(_HOSTS),
        "uncached_validation_us": round(uncached_s * 1e6, 1),
        "compile_us": round(compile_s * 1e6, 1),
        "cached_validation_us": round(cached_s * 1e6, 2),
        "one_host_joined_validation_us": round(joined_s * 1e6, 1),
    }
    compile_ratio = compile_s / uncached_s
    cached_ratio = cached_s / uncached_s
    return [
        Figure(
            bench="compile",
            name="grid16_compile_vs_uncached_validation",
            value=compile_ratio,
            unit="x",
            goal="<= 0.2",
            ok=compile_ratio <= 0.2,
            details=details,
        ),
        Figure(
            bench="compile",
            name="cached_vs_uncached_validation",
            value=cached_ratio,
            unit="x",
            goal="<= 0.01",
            ok=cached_ratio <= 0.01,
            details=details,
        ),
        Figure(
            bench="compile",
            name="one_host_joined_validation_vs_uncached",
            value=joined_s / uncached_s,
            unit="x",
            details=details,
        ),
    ]
