"""Issue 24 items 8 and 12: one driver per batch folder, and a local batch exposes nothing beyond loopback.

`samtrack batch` runs here as a user runs it (its own process, its own local Ray instance), so what its
Ray processes listen on is what a user's machine would expose; sockets are read from /proc (Linux).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEAOT_FIXTURES, davis_annotations, davis_frames
from PIL import Image

from samtrack import cli
from samtrack.io.rundir import RunLock

pytest.importorskip("ray")


def small_input(folder: Path, n: int = 4) -> tuple[Path, Path]:
    """Blackswan frames 0..n-1 at a quarter size, and a prompts file with the swan's mask on frame 0."""
    frames = folder / "swan"
    frames.mkdir(parents=True)
    for path in sorted(davis_frames("blackswan").glob("*.jpg"))[:n]:
        im = Image.open(path)
        im.resize((im.width // 4, im.height // 4), Image.BILINEAR).save(frames / path.name, quality=95)
    gt = Image.open(davis_annotations("blackswan") / "00000.png")
    mask = np.array(gt.resize((gt.width // 4, gt.height // 4), Image.NEAREST)) > 0
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "swan.png")
    (folder / "prompts.yaml").write_text("- frame: 0\n  label: swan\n  mask: swan.png\n")
    return frames, folder / "prompts.yaml"


def batch_args(frames: Path, prompts: Path, out: Path) -> list[str]:
    return ["--quiet", "batch", str(frames), "--out", str(out), "--prompts", str(prompts), "--workers", "1",
            "--tracker", "deaot-t", "--checkpoint", str(DEAOT_FIXTURES / "deaott.pth"), "--no-video", "--no-gif"]


def test_a_second_driver_on_a_batch_folder_is_refused_at_once(tmp_path, capsys):
    frames, prompts = small_input(tmp_path / "in")
    out = tmp_path / "batch"
    with RunLock.open(out):  # the first driver
        code = cli.main(batch_args(frames, prompts, out))
    said = capsys.readouterr().err
    assert code == 1 and said.count("\n") == 1, said
    assert f"{out} is in use by another samtrack run (pid {os.getpid()}" in said
    assert sorted(p.name for p in out.iterdir()) == []  # no batch.jsonl, no run folder


# ----------------------------------------------------------------------------- listening sockets

def _listening() -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket of this machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            if len(raw) == 4:
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:  # four host-order 32-bit words
                ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found[int(fields[9])] = (ip, int(port, 16))
    return found


def _tree(root: int) -> set[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        seen.add(pid)
        todo += children.get(pid, [])
    return seen


def _sockets(pids: set[int]) -> dict[tuple[str, int], tuple[int, str]]:
    """(address, port) -> (pid, program) of the listening sockets these processes hold."""
    listening, held = _listening(), {}
    for pid in pids:
        try:
            program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in listening:
                held[listening[int(target[8:-1])]] = (pid, program)
    return held


def _environment(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc (Linux)")
def test_a_local_batch_listens_on_loopback_only_with_token_authentication(tmp_path):
    frames, prompts = small_input(tmp_path / "in")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_AUTH_MODE="disabled")  # even a user who turned authentication off
    proc = subprocess.Popen([sys.executable, "-m", "samtrack", *batch_args(frames, prompts, tmp_path / "batch")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict[tuple[str, int], tuple[int, str]] = {}
    environments: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        for where, (pid, program) in _sockets(_tree(proc.pid) - {proc.pid}).items():
            seen.setdefault(where, (pid, program))
            if "gcs_server" in program or "raylet" in program:
                environments.setdefault(program, _environment(pid))
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    output = proc.communicate()[0]
    assert proc.returncode == 0, output
    programs = " ".join(program for _, program in seen.values())
    assert "gcs_server" in programs and "raylet" in programs, seen  # the run's Ray servers were seen
    exposed = {where: program for where, (_, program) in seen.items() if not _loopback(where[0])}
    assert exposed == {}, exposed
    assert environments and all(e.get("RAY_AUTH_MODE") == "token" and len(e.get("RAY_AUTH_TOKEN", "")) >= 32
                                for e in environments.values()), environments
    assert not (home / ".ray").exists()  # the run's token was never written to disk
