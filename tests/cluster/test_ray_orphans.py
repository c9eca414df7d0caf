"""What a killed driver's embedded Ray left is ended later; nothing else is."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cluster.ray_orphans import end_orphans, session_driver

# A process that names itself as Ray's agents do (prctl PR_SET_NAME, as setproctitle does) and
# keeps a file open, as they keep their logs.
HOLDER = """
import ctypes, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[2].encode()[:15], 0, 0, 0)
handle = open(sys.argv[1])
time.sleep(60)
"""


def _ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _holding(path: Path, name: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), name])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fds = Path(f"/proc/{process.pid}/fd")
        if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
            return process
        time.sleep(0.05)
    raise AssertionError(f"{name} never opened {path}")


def test_a_session_folder_names_its_driver():
    assert session_driver(Path("session_2026-12-06_03-25-07_137330_16867")) == 16867
    assert session_driver(Path("session_latest")) is None


def test_only_ray_processes_of_a_session_whose_driver_is_gone_are_ended(tmp_path):
    over = tmp_path / f"session_2026-12-06_00-00-00_000000_{_ended_pid()}"
    live = tmp_path / f"session_2026-12-06_00-00-00_000000_{os.getpid()}"
    for session in (over, live):
        (session / "logs").mkdir(parents=True)
        (session / "logs" / "agent.log").write_text("started\n")
    agent = _holding(over / "logs" / "agent.log", "ray::DashboardAgent")
    reader = _holding(over / "logs" / "agent.log", "tail")  # a user reading the log
    working = _holding(live / "logs" / "agent.log", "ray::RuntimeEnvAgent")
    try:
        ended = end_orphans(tmp_path)

        assert ended == [agent.pid] and agent.wait(timeout=5) != 0
        assert reader.poll() is None and working.poll() is None
        assert over.is_dir()  # its logs stay
    finally:
        for process in (agent, reader, working):
            process.kill()
            process.wait()
