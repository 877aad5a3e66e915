"""The web app in a real browser (headless Debian chromium driven by Playwright), end to end:
upload blackswan.mp4, click the swan (left, then a right/negative click), track 10 frames, go to
frame 5 (with the ◀ button), drag a box for a second object, track again,
download the masks zip and check both ids are in it. A screenshot of each step goes to
$SAMTRACK_APP_SCREENSHOTS (default: the test's tmp dir)."""

from __future__ import annotations

import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_app import app_settings

from samtrack.app import AppConfig, build_app, launch
from samtrack.io.masks import load_id_mask

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "") if Path(p).is_file()),
                None)
TIMEOUT = 120_000  # ms; tracking 10 full-size frames on a busy 2-core machine
SWAN = (360, 300)  # a pixel on the swan in frame 0 of blackswan (854x480)
OFF_SWAN = (100, 420)  # water
BOX = (560, 360, 800, 460)  # water at the bottom right on frame 5


@pytest.fixture(scope="module")
def app_url(tiny_sam, tmp_path_factory):
    demo = build_app(AppConfig(settings=app_settings(tiny_sam), max_frames=60,
                               work_root=tmp_path_factory.mktemp("browser_work")))
    url = launch(demo, block=False)
    yield url, demo
    demo.close()
    demo.handlers.close()


def image_point(page, x: float, y: float) -> tuple[float, float]:
    """The page position of pixel (x, y) of the frame image."""
    img = page.locator("#frame img")
    box = img.bounding_box()
    w, h = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h


@pytest.mark.slow
def test_browser_click_track_roll_back_download(app_url, blackswan_mp4, tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does this)")
    url, demo = app_url
    shots = Path(os.environ.get("SAMTRACK_APP_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--disable-gpu", "--disable-background-networking",
                                           "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.goto(url)
            status = page.locator("#status")
            page.locator("#upload input[type=file]").set_input_files(str(blackswan_mp4))
            expect(status).to_contain_text("Opened a video of 50 frames")
            expect(page.locator("#frame img")).to_be_visible()
            page.screenshot(path=shots / "1-opened.png")

            page.mouse.click(*image_point(page, *SWAN))
            expect(status).to_contain_text("Object 1: 1 click(s) on frame 0")
            page.mouse.click(*image_point(page, *OFF_SWAN), button="right")  # a negative click refines it
            expect(status).to_contain_text("Object 1: 2 click(s) on frame 0")
            page.get_by_role("tab", name="Objects").click()
            expect(page.locator("#objects")).to_contain_text("object 1")
            page.screenshot(path=shots / "2-swan-clicked.png")

            page.locator("#end input").fill("10")
            page.locator("#end input").press("Tab")
            page.locator("#track").click()
            expect(status).to_contain_text("forward from frame 0")
            page.screenshot(path=shots / "3-tracked-10.png")

            for frame in range(9, 4, -1):
                page.locator("#prev").click()
                expect(status).to_contain_text(f"Frame {frame} of 49")
            page.locator("#new-object").click()
            expect(status).to_contain_text("The next prompt makes a new object")
            page.mouse.move(*image_point(page, *BOX[:2]))  # drag a box
            page.mouse.down()
            page.mouse.move(*image_point(page, *BOX[2:]), steps=5)
            page.mouse.up()
            expect(status).to_contain_text("Box → object 2")
            page.screenshot(path=shots / "4-box-on-frame-5.png")

            page.locator("#track").click()
            expect(status).to_contain_text("forward from frame 5")
            page.screenshot(path=shots / "5-tracked-again.png")

            page.get_by_role("tab", name="Outputs").click()
            page.locator("#make-outputs").click()
            link = page.get_by_role("row", name=re.compile(r"masks\.zip")).get_by_role("link")
            expect(link).to_be_visible()
            with page.expect_download() as download:
                link.click()
            archive = tmp_path / "masks.zip"
            download.value.save_as(archive)
            page.screenshot(path=shots / "6-outputs.png", full_page=True)
            tab_folders = [p for p in demo.handlers.workspaces.root.iterdir() if (p / "video-1").is_dir()]
            assert len(tab_folders) == 1
            page.close(run_before_unload=True)
            deadline = time.monotonic() + 20
            while tab_folders[0].exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not tab_folders[0].exists(), "closing the tab did not remove its files"
        finally:
            browser.close()
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "masks")
    masks = [load_id_mask(p) for p in sorted((tmp_path / "masks").glob("*.png"))]
    assert len(masks) == 11  # both passes end at frame 10: only tracked frames are written
    assert 1 in masks[0] and 2 in masks[5] and not any(2 in m for m in masks[:5])
    assert {int(v) for m in masks for v in np.unique(m)} >= {0, 1, 2}
