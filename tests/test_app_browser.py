"""The web app in a real browser (headless Debian chromium driven by Playwright), end to end.

1. Upload blackswan.mp4, click the swan (left, then a right/negative click), track 10 frames, go to
   frame 5 (with the ◀ button), drag a box for a second object (drawn while dragging), track again,
   download the masks zip and check both ids are in it.
2. Choose a tracker whose weights are not on disk and track: the whole message (with the download
   command) is shown and the tab stays usable (click, undo, track with the first tracker, download);
   the frame box shows the frame typed, and a click right after typing never lands on the frame shown
   before; a brush stroke painted on frame 10 goes to frame 10 after Next, and says so.

A screenshot of each step goes to $SAMTRACK_APP_SCREENSHOTS (default: the test's tmp dir)."""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.error
import urllib.request
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


def launch_browser(pw):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does this)")
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--disable-gpu", "--disable-background-networking", "--disable-component-update",
                                    "--disable-sync"])


def screenshots(tmp_path: Path, name: str) -> Path:
    shots = Path(os.environ.get("SAMTRACK_APP_SCREENSHOTS") or tmp_path / "screenshots") / name
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def open_video(browser, url: str, video: Path):
    """A new page of the app with `video` uploaded and opened."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(url)
    page.locator("#upload input[type=file]").set_input_files(str(video))
    sync_api.expect(page.locator("#status")).to_contain_text(f"Opened {video.name}")
    return page


def image_point(page, x: float, y: float) -> tuple[float, float]:
    """The page position of pixel (x, y) of the frame image."""
    # read in one go: Gradio replaces the <img> when a new frame arrives
    where = page.wait_for_function("""() => {
        const i = document.querySelector('#frame img');
        if (!i || !i.naturalWidth) return null;
        const r = i.getBoundingClientRect();
        return [r.x, r.y, r.width, r.height, i.naturalWidth, i.naturalHeight];
    }""").json_value()
    left, top, width, height, w, h = where
    return left + (x + 0.5) * width / w, top + (y + 0.5) * height / h


@pytest.mark.slow
def test_browser_click_track_roll_back_download(app_url, blackswan_mp4, tmp_path):
    url, demo = app_url
    shots = screenshots(tmp_path, "1-main")
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT)
    with sync_api.sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            page = open_video(browser, url, blackswan_mp4)
            status = page.locator("#status")
            expect(status).to_contain_text("Opened blackswan.mp4: a video of 50 frames")
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
                expect(status).to_contain_text(f"Frame {frame} of 0–49")
            page.locator("#new-object").click()
            expect(status).to_contain_text("The next prompt makes a new object")
            page.mouse.move(*image_point(page, *BOX[:2]))  # drag a box: drawn while dragging
            page.mouse.down()
            page.mouse.move(*image_point(page, *BOX[2:]), steps=5)
            band = page.locator("#samtrack-band")
            expect(band).to_be_visible()
            drawn, corner = band.bounding_box(), image_point(page, *BOX[2:])
            assert abs(drawn["x"] + drawn["width"] - corner[0]) < 3 and abs(drawn["y"] + drawn["height"] - corner[1]) < 3
            page.screenshot(path=shots / "4a-box-dragging.png")
            page.mouse.up()
            expect(status).to_contain_text("Box → object 2")
            expect(band).to_be_hidden()
            page.get_by_role("tab", name="Objects").click()
            page.locator("#objects tr[data-id='1']").click()  # a row of the list picks its object
            expect(status).to_contain_text("Prompts now refine object 1.")
            expect(page.locator("#objects tr.samtrack-selected")).to_have_attribute("data-id", "1")
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


def choose_tracker(page, name: str) -> None:
    page.get_by_role("tab", name="Settings").click()
    tracker = page.get_by_role("combobox", name="Tracker")
    tracker.fill(name)
    tracker.press("Enter")
    page.get_by_role("button", name="Apply settings").click()


@pytest.mark.slow
def test_browser_failed_tracker_frame_box_and_stroke(app_url, blackswan_mp4, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMTRACK_CACHE", str(tmp_path / "cache"))  # r50-deaotl is not on disk

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    url, demo = app_url
    shots = screenshots(tmp_path, "2-recovery")
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT)
    with sync_api.sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            page = open_video(browser, url, blackswan_mp4)
            status, frame_box = page.locator("#status"), page.locator("#slider input[type=number]")
            page.mouse.click(*image_point(page, *SWAN))
            expect(status).to_contain_text("Object 1: 1 click(s) on frame 0")

            # a tracker with no weights on disk: the choice says what it downloads, Track says how to fetch it
            choose_tracker(page, "r50-deaotl")
            expect(status).to_contain_text("r50-deaotl is not on disk: tracking downloads it first (80 MB)")
            page.locator("#track").click()
            expect(status).to_contain_text("samtrack download r50-deaotl")  # in the status line, not hidden
            expect(status).to_contain_text("(URLError: <urlopen error [Errno -3] Temporary failure")
            expect(status.get_by_text("Error", exact=True)).to_have_count(0)  # no badge over the message
            expect(page.get_by_test_id("toast-body").first).to_contain_text("samtrack download r50-deaotl")
            page.screenshot(path=shots / "1-tracker-failed.png")
            # everything still works, and the work is intact
            page.mouse.click(*image_point(page, *SWAN))
            expect(status).to_contain_text("Object 1: 1 click(s) on frame 0")
            page.locator("#undo").click()
            expect(status).to_contain_text("Undid: edit object 1")
            choose_tracker(page, "deaot-t")
            expect(status).to_contain_text("tracker.model=deaot-t")
            page.locator("#end input").fill("3")
            page.locator("#end input").press("Tab")
            page.locator("#track").click()
            expect(status).to_contain_text("Tracked 4 frames forward from frame 0: frames 0-3.")
            page.screenshot(path=shots / "2-tracked-after-failure.png")

            # the frame box: typing shows the frame; a click right after typing never lands on the old frame
            frame_box.fill("7")
            frame_box.press("Enter")
            expect(status).to_contain_text("Frame 7 of 0–49")
            expect(page.locator("#frame")).to_contain_text("Frame 7 of 0–49")
            page.screenshot(path=shots / "3-frame-7-typed.png")
            page.locator("#new-object").click()
            expect(status).to_contain_text("The next prompt makes a new object")
            frame_box.fill("5")
            page.mouse.click(*image_point(page, *SWAN))
            expect(status).to_contain_text(re.compile(r"Object 2: 1 click\(s\) on frame 5|Frame 5 of 0–49 is shown now"))
            if "is shown now" in status.inner_text():  # the click came before frame 5 was on screen
                page.mouse.click(*image_point(page, *SWAN))
                expect(status).to_contain_text("Object 2: 1 click(s) on frame 5")
            expect(frame_box).to_have_value("5")
            ws = next(w for w in demo.handlers.workspaces._items.values() if w.name == "blackswan.mp4" and w.present)
            assert 2 in ws.session.mask(5) and 2 not in ws.session.mask(7)

            # a stroke painted on frame 10 goes to frame 10, even after Next
            frame_box.fill("10")
            frame_box.press("Enter")
            expect(status).to_contain_text("Frame 10 of 0–49")
            page.locator("#new-object").click()
            page.get_by_role("tab", name="More prompts").click()
            page.get_by_text("Brush stroke").click()
            page.locator("#brush-load").click()
            expect(status).to_contain_text("paint over the object on frame 10")
            page.locator("#editor button[aria-label='Brush']").first.click()
            canvas = page.locator("#editor canvas").first.bounding_box()
            x, y = canvas["x"] + canvas["width"] * 0.3, canvas["y"] + canvas["height"] * 0.6
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 120, y + 20, steps=12)
            page.mouse.up()
            page.locator("#next").click()
            expect(status).to_contain_text("Frame 11 of 0–49")
            page.locator("#brush-use").click()
            expect(status).to_contain_text("Stroke → object 3 on frame 10 (back on frame 10: the stroke was painted on it)")
            expect(frame_box).to_have_value("10")
            page.screenshot(path=shots / "4-stroke-on-frame-10.png")
            assert 3 in ws.session.mask(10) and 3 not in ws.session.mask(11)

            page.get_by_role("tab", name="Outputs").click()
            page.get_by_role("checkbox", name="DAVIS", exact=True).check()
            page.locator("#make-outputs").click()
            expect(status).to_contain_text("Wrote 5 files for frames 0-3, 5, 10 (6 frames) and 3 objects. Exported DAVIS")
            expect(page.get_by_role("row", name=re.compile(r"davis\.zip"))).to_be_visible()
            link = page.get_by_role("row", name=re.compile(r"masks\.zip")).get_by_role("link")
            with page.expect_download() as download:
                link.click()
            archive = tmp_path / "masks.zip"
            download.value.save_as(archive)
            page.screenshot(path=shots / "5-outputs.png", full_page=True)
            page.close()
        finally:
            browser.close()
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == [f"{i:05d}.png" for i in (0, 1, 2, 3, 5, 10)]
