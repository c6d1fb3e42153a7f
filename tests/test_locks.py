"""The folder lock (scorelib.locks) between real processes: a second holder is refused naming the first, a killed
holder's lock is taken over with a warning, a clean release leaves nothing to report."""
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from scorelib import locks

HOLD = textwrap.dedent("""
    import sys, time
    from scorelib import locks
    locks.acquire(sys.argv[1], "--save-dir " + sys.argv[1])
    print("locked", flush=True)
    if sys.argv[2] == "release":
        locks.release(sys.argv[1])
        print("released", flush=True)
    time.sleep(60)
""")


def holder(folder, then="hold"):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), then], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    if then == "release":
        assert proc.stdout.readline().strip() == "released"
    return proc


@pytest.mark.skipif(locks.fcntl is None, reason="no flock on this platform")
def test_second_process_refused_then_stale_lock_taken_over(tmp_path, caplog):
    first = holder(tmp_path)
    try:
        with pytest.raises(locks.FolderInUseError) as err:
            locks.acquire(tmp_path, f"--save-dir {tmp_path}")
        message = str(err.value)
        assert f"process {first.pid} " in message and "started" in message and "\n" not in message
        assert message.startswith(f"--save-dir {tmp_path}: in use by")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with caplog.at_level(logging.WARNING, logger="scorelib.locks"):
        assert locks.acquire(tmp_path, "--save-dir x") is True
    try:
        assert f"left by process {first.pid} " in caplog.text and "no longer running" in caplog.text
        assert f'"pid": {os.getpid()}' in (tmp_path / locks.LOCK_NAME).read_text()
    finally:
        locks.release(tmp_path)
    assert (tmp_path / locks.LOCK_NAME).read_text() == ""


@pytest.mark.skipif(locks.fcntl is None, reason="no flock on this platform")
def test_clean_release_leaves_no_warning_and_lock_is_reentrant(tmp_path, caplog):
    first = holder(tmp_path, then="release")
    try:
        with caplog.at_level(logging.WARNING, logger="scorelib.locks"):
            with locks.folder_lock(tmp_path, "--save-dir x"):
                assert locks.acquire(tmp_path, "--save-dir x") is False  # the same process again: re-entrant
                locks.release(tmp_path)
                other = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path), "hold"], capture_output=True,
                                       text=True, timeout=60)
                assert other.returncode == 1 and "FolderInUseError" in other.stderr  # still held by the outer lock
        assert caplog.text == ""
    finally:
        first.kill()
        first.wait()
    assert (tmp_path / locks.LOCK_NAME).read_text() == ""


@pytest.mark.skipif(locks.fcntl is None, reason="no flock on this platform")
def test_check_free_refuses_a_held_folder_and_writes_nothing(tmp_path):
    locks.check_free(tmp_path, "--save-dir x")  # no lock file: free, and none is made
    assert list(tmp_path.iterdir()) == []
    first = holder(tmp_path)
    try:
        with pytest.raises(locks.FolderInUseError, match=f"--save-dir x: in use by process {first.pid} "):
            locks.check_free(tmp_path, "--save-dir x")
    finally:
        first.kill()
        first.wait()
    text = (tmp_path / locks.LOCK_NAME).read_text()
    locks.check_free(tmp_path, "--save-dir x")  # the holder is gone: free, and its text is left for acquire to report
    assert (tmp_path / locks.LOCK_NAME).read_text() == text and str(first.pid) in text
