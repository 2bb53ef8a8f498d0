#!/usr/bin/env python
"""Benchmark: CPU share and memory of the agent's recorder on the test-pattern camera.

Each configuration runs in a fresh child process (so RSS is its own): a ``Capture`` of
the test pattern plus a ``Recorder`` writing real H.264/Matroska segments to a temporary
directory. CPU share is the process's CPU time (all threads: pattern generation, colour
conversion, x264, muxing, hashing) over wall time, so 1.0 means one core busy. The
pattern's own cost is measured separately (``source_cores``): a real camera costs the
host less than generating the pattern, but more when its frames must be decoded.
``cores_at_target`` is CPU time per frame written times the target fps: the cost of the
target rate even when a busy machine starves the process and it falls behind.

The floor (``floors.encode_floor``), in a child process of its own for each configuration: the
same pattern's frames (one second of them, over and over) encoded by libx264 through PyAV
alone with the same settings (without ``--denoise``'s filter), as fast as it goes.
``ratio.cpu_per_frame`` = the recorder's CPU per written frame without the pattern's own cost
(``cores_at_target - source_cores``) over the floor's; ``cpu_ms_per_unit`` is the recorder's
process CPU per written frame (pattern included).

    .venv/bin/python bench/agent_recording.py --quick

The last line printed is one JSON object: {"bench": "agent_recording", "results": [...]}.
Target: cpu_cores <= 1.0 at 1280x720 @ 30 fps (an absolute budget: the enclosure computer's
core); the ratio has no target.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


from enclosure_agent.recorder import (  # noqa: E402
    Capture,
    EncoderSettings,
    Recorder,
    RecordingSpec,
    SegmentPolicy,
    TestPatternSource,
    default_denoise,
)

RUNS = (  # (resolution, noise bits): the two the issue asks for, plus sensor-like noise
    ("640x480", 0),
    ("1280x720", 0),
    ("1280x720", 2),
)
SOURCE_ONLY_S = 3.0  # the pattern alone is cheap and steady: a short run is enough
FPS = 30
TARGET_RES = "1280x720"
TARGET_CORES = 1.0  # the enclosure computer's budget: an absolute figure, not a ratio
FLOOR_IMAGES_S = 1.0  # the floor encodes this long a stretch of the pattern, over and over
WARMUP_S = 2.0  # x264 lookahead fills and the first keyframe is written before measuring
RSS_SAMPLE_S = 0.25


def measure_floor(width: int, height: int, args: argparse.Namespace) -> dict[str, object]:
    """The floor for one configuration, in this process."""
    source = TestPatternSource(width, height, args.fps, grey=args.grey, noise_bits=args.noise)
    source.open()
    try:
        images = []
        for _ in range(max(1, round(FLOOR_IMAGES_S * args.fps))):
            frame = source.read(timeout_s=10)
            assert frame is not None
            images.append(frame.image)
    finally:
        source.close()
    from floors import encode_floor  # here: the children's RSS is measured, keep them lean

    encoder = EncoderSettings(crf=args.crf, preset=args.preset)
    return encode_floor(images, args.fps, round(args.seconds * args.fps), encoder, args.grey)


def measure(width: int, height: int, args: argparse.Namespace) -> dict[str, object]:
    """Run one configuration in this process and return its figures."""
    process = psutil.Process()
    source = TestPatternSource(width, height, args.fps, grey=args.grey, noise_bits=args.noise)
    seconds = min(args.seconds, SOURCE_ONLY_S) if args.source_only else args.seconds
    encoder = EncoderSettings(
        crf=args.crf, preset=args.preset, denoise=default_denoise() if args.denoise else None
    )
    with tempfile.TemporaryDirectory(prefix="jaxmba-bench-") as tmp, Capture(source) as capture:
        if args.source_only:
            recorder = None
        else:
            spec = RecordingSpec(
                Path(tmp),
                "bench",
                "bench-enc",
                target_fps=args.fps,
                segment_policy=SegmentPolicy.every_minutes(60),
                encoder=encoder,
            )
            recorder = Recorder(capture, spec)
            recorder.start()
        capture.wait_for_frame(timeout_s=10)
        time.sleep(WARMUP_S)
        frames0 = recorder.stats().frames_written if recorder else capture.state().frames_captured
        cpu0 = sum(process.cpu_times()[:2])
        wall0 = time.monotonic()
        rss_peak = process.memory_info().rss
        while time.monotonic() - wall0 < seconds:
            time.sleep(RSS_SAMPLE_S)
            rss_peak = max(rss_peak, process.memory_info().rss)
        wall = time.monotonic() - wall0
        cpu = sum(process.cpu_times()[:2]) - cpu0
        result: dict[str, object] = {
            "res": f"{width}x{height}",
            "fps": args.fps,
            "grey": args.grey,
            "noise_bits": args.noise,
            "seconds": round(wall, 1),
            "cpu_cores": round(cpu / wall, 3),
            "rss_mb": round(rss_peak / 2**20, 1),
        }
        if recorder is None:
            frames = capture.state().frames_captured - frames0
            result["measured_fps"] = round(frames / wall, 2)
            return result
        stats = recorder.stats()
        frames = stats.frames_written - frames0
        # CPU per frame written, scaled to the target rate: what the target needs even when
        # other processes on a shared machine starve this one and it falls behind
        result["cores_at_target"] = round(cpu / max(frames, 1) * args.fps, 3)
        recorder.stop()
        size = sum(segment.bytes for segment in recorder.segments)
        result.update(
            measured_fps=round(frames / wall, 2),
            frames_dropped=stats.frames_dropped,
            preset=args.preset,
            crf=args.crf,
            denoise=encoder.denoise,
            mbit_s=round(size * 8 / stats.recorded_s / 1e6, 2) if stats.recorded_s else None,
        )
        return result


def run_child(
    res: str, noise: int, args: argparse.Namespace, *, source_only: bool, floor: bool = False
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        res,
        "--seconds",
        str(args.seconds),
        "--fps",
        str(args.fps),
        "--preset",
        args.preset,
        "--crf",
        str(args.crf),
    ]
    command += ["--grey"] * args.grey + ["--denoise"] * args.denoise
    command += ["--source-only"] * source_only + ["--noise", str(noise)] + ["--floor"] * floor
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s per configuration")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per run")
    parser.add_argument("--fps", type=int, default=FPS)
    parser.add_argument("--preset", default=EncoderSettings().preset)
    parser.add_argument("--crf", type=int, default=EncoderSettings().crf)
    parser.add_argument("--grey", action="store_true", help="greyscale camera")
    parser.add_argument("--denoise", action="store_true", help="with the denoise stage")
    parser.add_argument(
        "--noise", type=int, default=None, help="sensor-like noise bits in the pattern (0..4)"
    )
    parser.add_argument("--res", action="append", help="WxH (repeatable)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--source-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 30.0
    if args.child:
        width, height = (int(v) for v in args.child.split("x"))
        args.noise = args.noise or 0
        print(json.dumps((measure_floor if args.floor else measure)(width, height, args)))
        return
    from _support import machine  # not in the children: their RSS is measured
    from floors import check_targets, ratio

    if args.res:
        runs = [(res, args.noise or 0) for res in args.res]
    else:
        runs = [run for run in RUNS if args.noise is None or run[1] == args.noise]
    results = []
    for res, noise in runs:
        result = run_child(res, noise, args, source_only=False)
        result["source_cores"] = run_child(res, noise, args, source_only=True)["cpu_cores"]
        floor = run_child(res, noise, args, source_only=False, floor=True)
        result["floor"] = floor
        own = result["cores_at_target"] - result["source_cores"]
        result["ratio"] = {"cpu_per_frame": ratio(own, floor["cores_at_target"])}
        result["cpu_ms_per_unit"] = {
            "unit": "frame written",
            "recorder": round(result["cores_at_target"] / args.fps * 1000, 3),
        }
        results.append(result)
        print(
            f"{res} @ {args.fps} fps {'grey' if args.grey else 'colour'} noise {noise}: "
            f"{result['cpu_cores']} cores ({result['cores_at_target']} per {args.fps} fps written, "
            f"pattern alone {result['source_cores']}), "
            f"RSS {result['rss_mb']} MB, {result['measured_fps']} fps, "
            f"{result['mbit_s']} Mbit/s, dropped {result['frames_dropped']}, "
            f"CPU per frame {result['ratio']['cpu_per_frame']} x the bare encoder's",
            flush=True,
        )
    targets = {}
    for r in results:
        if r["res"] == TARGET_RES:
            name = f"cores_at_target <= {TARGET_CORES:g} at {TARGET_RES}, noise {r['noise_bits']}"
            targets[name] = r["cores_at_target"] <= TARGET_CORES
    facts = machine()
    print(
        json.dumps(
            {
                "bench": "agent_recording",
                "results": results,
                "targets": targets,
                "targets_met": check_targets("agent_recording", targets) if targets else None,
                "machine": facts,
            }
        )
    )


if __name__ == "__main__":
    main()
