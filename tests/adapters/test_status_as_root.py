"""`mqtt-gateway status` run as root on a store the service user owns (here: nobody) leaves
no file beside the store that the service could not open afterwards.

Real processes: the status command as root, and a writer holding the store as nobody
(a Python with only the standard library, as the service's own connection would).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.edge.status import give_back
from gateway.store.outbox import Outbox
from tests.support.procs import REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (status as root)")

NOBODY = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
# Opens the store in WAL mode as the service would, says "open", waits for a line, writes a
# row and commits, then exits 0 (anything the root run left unopenable fails it).
HOLDER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
c.execute("PRAGMA journal_mode=WAL")
c.execute("SELECT count(*) FROM meta").fetchone()
print("open", flush=True)
sys.stdin.readline()
c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('holder', 'wrote')")
c.close()
print("wrote", flush=True)
"""


@pytest.fixture
def store() -> Iterator[tuple[Path, Path]]:
    """A config and a closed store under a state_dir owned by nobody (mode 0700)."""
    assert NOBODY is not None
    base = Path(tempfile.mkdtemp(prefix="status-root-"))
    try:
        base.chmod(0o755)
        state = base / "state"
        config = base / "gateway.yaml"
        config.write_text(f"""version: 1
gateway: {{id: gw1, state_dir: {state}}}
broker: {{url: "mqtt://127.0.0.1:1"}}
devices:
  - id: climate
    driver: simulator
    streams:
      - {{name: temperature, field: temp_c, delivery: at-least-once}}
""")
        outbox = Outbox.open(state / "outbox.sqlite", "gw1", durability="normal", max_bytes=1 << 30)
        outbox.close(clean=True)
        for path in [state, *state.iterdir()]:
            os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
        state.chmod(0o700)
        yield config, state / "outbox.sqlite"
    finally:
        shutil.rmtree(base)


def status(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "status", "--config", str(config)],
                          capture_output=True, text=True, check=False, cwd=REPO, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def owners(directory: Path) -> dict[str, int]:
    return {p.name: p.lstat().st_uid for p in directory.iterdir()}


def test_status_as_root_leaves_nothing_the_service_user_cannot_open(
        store: tuple[Path, Path]) -> None:
    assert NOBODY is not None
    config, db = store
    done = status(config)
    assert done.returncode == 0, done.stderr
    assert "gateway gw1" in done.stdout
    assert set(owners(db.parent).values()) == {NOBODY.pw_uid}, owners(db.parent)

    # While the service (nobody) has the store open in WAL mode, as while it runs.
    holder = subprocess.Popen(["/usr/bin/python3", "-c", HOLDER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, user=NOBODY.pw_uid,
                              group=NOBODY.pw_gid, extra_groups=[])
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "open"
        done = status(config)
        assert done.returncode == 0, done.stderr
        assert set(owners(db.parent).values()) == {NOBODY.pw_uid}, owners(db.parent)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "wrote"
        assert holder.wait(20) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
    assert set(owners(db.parent).values()) == {NOBODY.pw_uid}, owners(db.parent)


def test_give_back_hands_a_root_owned_side_file_to_the_store_owner(
        store: tuple[Path, Path]) -> None:
    assert NOBODY is not None
    _, db = store
    side = db.with_name(db.name + "-shm")
    side.write_bytes(b"")  # made by root, as a build without SQLite's own chown would
    assert side.stat().st_uid == 0
    give_back(db)
    assert (side.stat().st_uid, side.stat().st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
