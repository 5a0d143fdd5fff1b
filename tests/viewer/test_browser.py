"""The page in a real browser: headless Debian Chromium driven by Selenium.

The server runs on 127.0.0.1 (a free port) in a thread on a phantom results folder. The
test scrolls the three planes (the decoded slice the page shows equals the server's PNG),
paints a brush disc at a known voxel, undoes and redoes it, saves (the saved mask differs
from the prediction exactly in that disc), accepts (the next case opens), reads the audit
log and checks that a page opened without the token is refused.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk

pytestmark = pytest.mark.browser

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("needs Debian's chromium and chromium-driver (apt install chromium "
                "chromium-driver)", allow_module_level=True)  # fmt: skip

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402
from tests.viewer.conftest import TOKEN  # noqa: E402

from medseg.viewer.app import create_app  # noqa: E402
from medseg.viewer.serve import bind_socket  # noqa: E402


@pytest.fixture
def server(results):
    app = create_app(results, token=TOKEN, user="browser")
    sock = bind_socket("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for _ in range(100):
        if uv.started:
            break
        time.sleep(0.05)
    yield base, results
    uv.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,800",
                "--disable-dev-shm-usage", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER),
                              options=options)  # fmt: skip
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def wait(driver, script, timeout=15):
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def shown(driver, plane, layer="image"):
    data = driver.execute_script("return window.medsegViewer.pixels(arguments[0], arguments[1])",
                                 plane, layer)  # fmt: skip
    return data["index"], np.array(data["values"], np.uint8).reshape(data["height"], data["width"])


def server_png(base, case, plane, index, layer="image", window="mri"):
    response = httpx.get(f"{base}/api/cases/{case}/slice", headers={"x-medseg-token": TOKEN},
                         params={"plane": plane, "index": index, "layer": layer,
                                 "window": window})  # fmt: skip
    return np.array(PILImage.open(io.BytesIO(response.content)))


def click_voxel(driver, plane, row, col):
    canvas = driver.find_element(By.CSS_SELECTOR, f'canvas[data-plane="{plane}"]')
    rect = driver.execute_script("return arguments[0].getBoundingClientRect().toJSON()", canvas)
    meta = driver.execute_script(
        "return window.medsegViewer.state.meta.planes[arguments[0]]", plane
    )
    x = (col + 0.5) * rect["width"] / meta["cols"] - rect["width"] / 2
    y = (row + 0.5) * rect["height"] / meta["rows"] - rect["height"] / 2
    ActionChains(driver).move_to_element_with_offset(canvas, round(x), round(y)).click().perform()


def test_review_in_the_browser(server, browser):
    base, results = server
    started = time.perf_counter()
    browser.get(f"{base}/")  # no token, no cookie
    assert "missing or wrong token" in browser.page_source
    browser.get(f"{base}/?token={TOKEN}")
    wait(browser, "const v = window.medsegViewer; return !!(v && v.state.meta && "
                  "v.state.raw.axial && v.state.raw.sagittal && v.state.raw.coronal)")  # fmt: skip
    case = browser.execute_script("return window.medsegViewer.state.caseId")
    window = browser.execute_script("return document.querySelector('#window').value")

    for plane in ("axial", "coronal", "sagittal"):  # wheel-scroll each plane by 2 slices
        start, _ = shown(browser, plane)
        canvas = browser.find_element(By.CSS_SELECTOR, f'canvas[data-plane="{plane}"]')
        for _ in range(2):
            ActionChains(browser).scroll_from_origin(
                ScrollOrigin.from_element(canvas), 0, 60
            ).perform()
            time.sleep(0.1)
        wait(
            browser, f"return window.medsegViewer.pixels('{plane}', 'image').index === {start + 2}"
        )
        index, pixels = shown(browser, plane)
        np.testing.assert_array_equal(pixels, server_png(base, case, plane, index, window=window))

    # paint one click of a 3 mm brush with label 3 on axial voxel (row 20, col 24)
    axial, _ = shown(browser, "axial")
    browser.find_element(By.CSS_SELECTOR, 'button[data-tool="brush"]').click()
    Select(browser.find_element(By.ID, "label")).select_by_value("3")
    radius = browser.find_element(By.ID, "radius")
    radius.clear()
    radius.send_keys("3")
    pred_slice = server_png(base, case, "axial", axial, layer="prediction")
    click_voxel(browser, "axial", 20, 24)
    rows, cols = np.mgrid[: pred_slice.shape[0], : pred_slice.shape[1]]
    disc = (rows - 20) ** 2 + (cols - 24) ** 2 <= 9  # 1 mm pixels in the axial plane
    wait(browser, "return window.medsegViewer.state.meta.edit.can_undo")
    wait(browser, "const p = window.medsegViewer.pixels('axial', 'edit'); "
                  "return p && p.values[20 * p.width + 24] === 3")  # fmt: skip
    browser.find_element(By.ID, "undo").click()
    wait(browser, "const p = window.medsegViewer.pixels('axial', 'edit'); "
                  "return p && p.values[20 * p.width + 24] !== 3")  # fmt: skip
    np.testing.assert_array_equal(shown(browser, "axial", "edit")[1], pred_slice)  # undo restores
    browser.find_element(By.ID, "redo").click()
    wait(browser, "return window.medsegViewer.state.meta.edit.can_undo")
    browser.find_element(By.ID, "save").click()
    wait(browser, "return document.querySelector('#message').textContent.startsWith('saved')")

    saved = sitk.GetArrayFromImage(
        sitk.ReadImage(str(results / "corrections" / case / "v1.nii.gz"))
    )
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(results / "predictions" / f"{case}.nii.gz")))
    expected = np.zeros(pred.shape, bool)
    expected[axial] = disc & (pred[axial] != 3)
    np.testing.assert_array_equal(saved != pred, expected)
    assert (saved[expected] == 3).all()

    browser.find_element(By.ID, "accept").click()
    wait(browser, f"return window.medsegViewer.state.caseId !== '{case}'")
    actions = [json.loads(line)["action"] for line in (results / "audit.jsonl").open()]
    assert actions == ["save", "accept"]

    # scrolling throughput: 30 slices, each fetched, decoded and drawn before the next
    rate = browser.execute_async_script("""
        const done = arguments[arguments.length - 1], v = window.medsegViewer;
        const n = v.state.meta.planes.axial.count, t0 = performance.now();
        (async () => { for (let i = 0; i < 30; i++) await v.goto('axial', i % n);
                       done(30000 / (performance.now() - t0)); })();""")
    version = browser.capabilities.get("browserVersion")
    message = (
        f"\nbrowser test: Chromium {version}, {rate:.0f} slices/s while scrolling (64 x 64 "
        f"axial phantom slices, image + edit layers), {time.perf_counter() - started:.1f} s"
    )
    print(message)  # noqa: T201
    assert rate > 0
