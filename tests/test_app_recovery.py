"""Issue 23 items 1-4 through the app's API: a tracker that cannot load leaves the tab usable with its work
intact, the tracker the app was started with keeps its --checkpoint, messages reach the page whole, and
the tracker list says what is on disk and what a choice downloads."""

from __future__ import annotations

import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from test_app import Client, client, handle_file, objects, server, small_mp4  # noqa: F401 - fixtures

from samtrack.app.layout import tracker_choices
from samtrack.models import registry

PANEL = [5, 16, 255, 20, 0.8, 9999, 9999, "fp32"]  # the settings panel after the tracker, in order


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty model cache, and a network that fails the way a machine without internet does."""
    monkeypatch.setenv("SAMTRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SAMTRACK_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path / "cache"


def settings(c: Client, tracker: str) -> str:
    return c.predict(tracker, *PANEL, api_name="/settings")


def test_a_tracker_that_cannot_load_leaves_the_tab_usable(server, small_mp4, offline_cache, tmp_path):  # noqa: F811
    _, url = server
    c = client(url)
    c.predict(handle_file(str(small_mp4)), 30, api_name="/open_video")
    c.predict(0, 80, 60, True, 0, api_name="/add_click")
    c.submit("forward", 3, False, api_name="/propagate").result()
    c.predict(0, api_name="/goto")
    applied = settings(c, "r50-deaotl")
    assert "r50-deaotl is not on disk: tracking downloads it first (80 MB)" in applied
    with pytest.raises(Exception) as failed:
        c.submit("forward", 6, False, api_name="/propagate").result()
    message = str(failed.value)
    # the whole message, with the command that fixes it; the library's "<urlopen error ...>" escaped
    assert "samtrack download r50-deaotl" in message and "&lt;urlopen error" in message
    assert "a propagation is running" not in message
    # every action works again, and the work is intact
    added = c.predict(2, 30, 30, True, 0, api_name="/add_click")
    assert added["object"] == 2
    assert "Undid: add object" in c.predict(api_name="/undo")[-1]
    assert [o["id"] for o in objects(c)["objects"]] == [1]
    assert "Nothing is running" in c.predict(api_name="/stop")[-1]
    assert "tracker.model=deaot-t" in settings(c, "deaot-t")
    c.predict(0, api_name="/goto")
    final = c.submit("forward", 6, False, api_name="/propagate").result()
    assert final[-1].startswith("Tracked ")
    _, files, status = c.predict([], api_name="/download")
    assert "for frames 0-6 (7 frames) and 1 object" in status
    with zipfile.ZipFile(next(f for f in files if f.endswith("masks.zip"))) as zf:
        assert len(zf.namelist()) == 7


def test_the_started_tracker_keeps_its_checkpoint_after_switching_away_and_back(server, small_mp4,  # noqa: F811
                                                                                 offline_cache):
    _, url = server
    c = client(url)
    c.predict(handle_file(str(small_mp4)), 30, api_name="/open_video")
    c.predict(0, 80, 60, True, 0, api_name="/add_click")
    settings(c, "sam2.1-tiny")
    settings(c, "deaot-t")
    # without its --checkpoint, deaot-t would be looked for in the (empty) cache and fail offline
    assert c.submit("forward", 4, False, api_name="/propagate").result()[-1].startswith("Tracked ")


def test_the_tracker_list_says_what_is_on_disk_and_what_a_choice_downloads(offline_cache, tmp_path):
    fixture = str(Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "deaot" / "deaott.pth")
    choices = tracker_choices("deaot-t", fixture)
    names = [name for _, name in choices]
    assert len(names) == len(set(names)) == len(registry.list_specs("tracker"))
    labels = {name: label for label, name in choices}
    assert labels["deaot-t"] == "deaot-t (on disk)" and names[0] == "deaot-t"  # what works offline comes first
    assert labels["r50-deaotl"] == "r50-deaotl (downloads 80 MB)"
    assert labels["sam2.1-tiny"] == "sam2.1-tiny (downloads 156 MB)"
    # a file in the cache counts as on disk; a custom path is listed as what it is
    spec = registry.get_spec("r50-aotl")
    registry.file_path(spec).parent.mkdir(parents=True, exist_ok=True)
    registry.file_path(spec).write_bytes(b"x")  # the registry knows no size for it: any file counts
    after = tracker_choices("deaot-t", None)
    assert after[0] == ("r50-aotl (on disk)", "r50-aotl") and ("deaot-t (downloads 29 MB)", "deaot-t") in after
    custom = tmp_path / "mine.pth"
    assert tracker_choices(str(custom), None)[0] == (f"{custom} (missing)", str(custom))
    custom.write_bytes(b"x")
    assert tracker_choices(str(custom), None)[0] == (f"{custom} (on disk)", str(custom))


def test_the_tracker_is_one_of_the_list(server, small_mp4):  # noqa: F811
    _, url = server
    c = client(url)
    c.predict(handle_file(str(small_mp4)), 30, api_name="/open_video")
    with pytest.raises(Exception, match="not in the list of choices"):
        settings(c, "/etc/passwd")  # a web user cannot point the server at files of its own


def test_errors_shown_on_the_page_are_escaped_and_name_no_server_paths(server, tmp_path):  # noqa: F811
    demo, url = server
    c = client(url)
    fake = tmp_path / "holiday.mp4"
    fake.write_text("not a video at all")
    with pytest.raises(Exception) as refused:
        c.predict(handle_file(str(fake)), 30, api_name="/open_video")
    message = str(refused.value)
    assert message.startswith("cannot read video holiday.mp4; the file is corrupt, truncated or not a video")
    assert str(demo.handlers.workspaces.root) not in message and "/tmp" not in message
    assert "Errno" not in message and "Invalid data found" not in message  # no raw ffmpeg error
