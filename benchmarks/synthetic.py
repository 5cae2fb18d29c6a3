"""Speed of the synthetic dataset generator, in images per second (target: >= 500 on one core).

    python benchmarks/synthetic.py                      # SYSU layout, 60 ids, 128x64, one worker
    python benchmarks/synthetic.py --ids 200 --workers 4 --height 288 --width 144

Prints the rate of drawing alone (in memory) and of the full generator (draw, JPEG, write),
best of `--repeats` runs into an empty temporary folder each time, per second of wall-clock time
and per second of this process's CPU time (user + system; one worker only). On a shared machine
the CPU-time rate is the one-core speed; the wall-clock rate also counts waiting for the CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vireid.data.synthetic import generate_synthetic
from vireid.data.synthetic_people import draw_image

TARGET = 500.0


def draw_rate(ids: int, height: int, width: int) -> tuple[float, float]:
    """Images per wall-clock and per CPU second for drawing and rendering only, no files."""
    cams = ("cam1", "cam2", "cam3", "cam4", "cam5", "cam6")
    draw_image(0, 1, "cam1", 0, height, width)  # warm the per-camera caches
    wall, cpu = time.perf_counter(), time.process_time()
    for pid in range(1, ids + 1):
        for cam in cams:
            draw_image(0, pid, cam, 0, height, width)
    n = ids * len(cams)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def generate_rate(layout: str, ids: int, height: int, width: int, workers: int) -> tuple[float, float, int]:
    """Images per wall-clock and per CPU second for the whole generator writing a fresh root."""
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        root = generate_synthetic(Path(tmp) / "data", layout=layout, ids=ids, height=height, width=width,
                                  progress=False, workers=workers)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        images = json.loads((root / "synthetic.json").read_text())["images"]
    return images / wall, images / cpu, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", default="sysu", choices=("sysu", "regdb"))
    parser.add_argument("--ids", type=int, default=60)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    drawn = [draw_rate(args.ids, args.height, args.width) for _ in range(args.repeats)]
    runs = [generate_rate(args.layout, args.ids, args.height, args.width, args.workers) for _ in range(args.repeats)]
    images = runs[0][2]
    print(f"synthetic {args.layout} {args.height}x{args.width}, {args.ids} ids, {images} images, "
          f"{args.workers} worker(s)")
    print(f"draw only        : {max(r[0] for r in drawn):7.0f} images/s wall, {max(r[1] for r in drawn):7.0f} per CPU s")
    wall, cpu = max(r[0] for r in runs), max(r[1] for r in runs)
    cpu_text = f"{cpu:7.0f} per CPU s" if args.workers == 1 else "(CPU time is in the workers)"
    print(f"generate (files) : {wall:7.0f} images/s wall, {cpu_text}")
    print(f"one-core speed vs the {TARGET:.0f} images/s target: "
          + (f"{cpu / TARGET:.2f}x (CPU time)" if args.workers == 1 else f"{wall / TARGET:.2f}x (wall, all workers)"))

if __name__ == "__main__":
    main()
