"""Viewer slice latency (issue 21; a table, not a test).

Builds a CT-like 512 x 512 x 300 int16 volume (plus a uint8 prediction) as a one-case
results folder, serves it with ``medseg.viewer`` on 127.0.0.1 (uvicorn in a thread, real
HTTP through httpx) and measures:

* the first load (``meta``: the NIfTI read and memory-mapped);
* per plane, the latency of a 512-wide slice PNG at random indices (``p50``/``p95``; each a
  cache miss, no prefetch hit) for the windowed image and for the prediction layer;
* slices/s while scrolling: consecutive axial slices, image + prediction per slice, one
  request after the other (the prefetch of neighbours helps here, as in the page);
* with ``--browser``: the same scroll in headless Chromium (Selenium), fetched, decoded and
  drawn per slice.

    .venv/bin/python benchmarks/viewer_latency.py [--slices 300] [--requests 60] [--browser]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from medseg.io import Image, write_image
from medseg.viewer.app import create_app
from medseg.viewer.serve import bind_socket

TOKEN = "benchmark-token"


def make_volume(root: Path, depth: int) -> Path:
    """A one-case results folder: body ellipse, organ, bone ring, noise; prediction = organ."""
    ds, res = root / "ds", root / "res"
    for folder in (ds / "imagesTr", ds / "labelsTr", res / "predictions"):
        folder.mkdir(parents=True)
    y, x = np.mgrid[:512, :512].astype(np.float32)
    rng = np.random.default_rng(0)
    image = np.empty((depth, 512, 512), np.int16)
    label = np.zeros((depth, 512, 512), np.uint8)
    for z in range(depth):
        r = 1 - 0.3 * abs(z - depth / 2) / depth
        body = ((x - 256) / (220 * r)) ** 2 + ((y - 256) / (170 * r)) ** 2 < 1
        organ = ((x - 300) / 60) ** 2 + ((y - 240) / (45 * r)) ** 2 < 1
        bone = np.abs(np.hypot(x - 256, y - 330) - 30) < 6
        hu = np.where(body, 40.0, -1000.0) + 60 * organ + 700 * bone
        image[z] = (hu + rng.normal(0, 20, hu.shape)).astype(np.int16)
        label[z] = organ
    spacing = (1.0, 0.7, 0.7)
    write_image(Image(image, spacing), ds / "imagesTr" / "ct_000_0000.nii")
    write_image(Image(label, spacing), ds / "labelsTr" / "ct_000.nii")
    shutil.copy(ds / "labelsTr" / "ct_000.nii", res / "predictions" / "ct_000.nii")
    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1},
            "numTraining": 1, "file_ending": ".nii"}  # fmt: skip
    (ds / "dataset.json").write_text(json.dumps(meta))
    (res / "plans.json").write_text(json.dumps({"dataset_path": str(ds)}))
    return res


def start_server(results: Path) -> tuple[str, uvicorn.Server]:
    app = create_app(results, token=TOKEN, user="benchmark")
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def timed(client: httpx.Client, url: str, **params) -> float:
    start = time.perf_counter()
    response = client.get(url, params=params)
    response.raise_for_status()
    return (time.perf_counter() - start) * 1000


def measure(base: str, depth: int, requests: int) -> list[tuple[str, str]]:
    rows = []
    url = f"{base}/api/cases/ct_000/slice"
    with httpx.Client(headers={"x-medseg-token": TOKEN}, timeout=60) as client:
        first = timed(client, f"{base}/api/cases/ct_000/meta")
        first += timed(client, url, plane="axial", index=0, layer="prediction")
        rows.append(("first load (meta + first slice)", f"{first:.0f} ms"))
        rng = random.Random(0)
        for plane, count in (("axial", depth), ("coronal", 512), ("sagittal", 512)):
            for layer in ("image", "prediction"):
                picks = rng.sample(range(3, count - 3), min(requests, count - 6))
                ms = [timed(client, url, plane=plane, index=i, layer=layer,
                            window="ct_soft_tissue") for i in picks]  # fmt: skip
                p50, p95 = np.percentile(ms, [50, 95])
                rows.append(
                    (f"{plane} {layer} (random slices)", f"p50 {p50:.1f} ms, p95 {p95:.1f} ms")
                )
        start = time.perf_counter()
        n = min(100, depth)
        for i in range(n):
            timed(client, url, plane="axial", index=i, layer="image", window="ct_soft_tissue")
            timed(client, url, plane="axial", index=i, layer="prediction")
        rate = n / (time.perf_counter() - start)
        rows.append(("scrolling axial over HTTP (image + prediction)", f"{rate:.0f} slices/s"))
    return rows


def browser_rate(base: str) -> tuple[str, str]:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")),
                              options=options)  # fmt: skip
    try:
        driver.set_script_timeout(120)
        driver.get(f"{base}/?token={TOKEN}")
        for _ in range(600):
            if driver.execute_script("return !!(window.medsegViewer && "
                                     "window.medsegViewer.state.raw.axial)"):  # fmt: skip
                break
            time.sleep(0.1)
        rate = driver.execute_async_script("""
            const done = arguments[arguments.length - 1], v = window.medsegViewer;
            const t0 = performance.now();
            (async () => { for (let i = 0; i < 60; i++) await v.goto('axial', 100 + i);
                           done(60000 / (performance.now() - t0)); })();""")
        version = driver.capabilities.get("browserVersion")
    finally:
        driver.quit()
    return (f"scrolling axial in Chromium {version} (image + edit, drawn)", f"{rate:.0f} slices/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="volume depth (512 x 512 each)")
    parser.add_argument("--requests", type=int, default=60, help="random slices per plane/layer")
    parser.add_argument("--browser", action="store_true", help="also scroll in headless Chromium")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="viewer-bench-"))
    try:
        start = time.perf_counter()
        results = make_volume(root, args.slices)
        print(
            f"volume 512 x 512 x {args.slices} int16 written in {time.perf_counter() - start:.1f} s"
        )
        base, server = start_server(results)
        rows = measure(base, args.slices, args.requests)
        if args.browser:
            rows.append(browser_rate(base))
        server.should_exit = True
        width = max(len(r[0]) for r in rows)
        print(f"\n| {'measurement':<{width}} | result |\n|{'-' * (width + 2)}|--------|")
        for name, value in rows:
            print(f"| {name:<{width}} | {value} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
