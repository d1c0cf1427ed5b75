"""The suite's outages on a shared rig: the rig's lock is held while a component is down on purpose
(a concurrent `rig.py up` waits instead of replacing the rig), and a test-session mark left by a
session that met the outage is removed at the end of the run."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest
from chaos import rigproc


@pytest.fixture
def rig_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(rigproc, "RIG", tmp_path)
    monkeypatch.setattr(rigproc, "LOCK", tmp_path / "rig.lock")
    monkeypatch.setattr(rigproc, "OWNED_BY_TESTS", tmp_path / "run" / "owned-by-test-session")
    (tmp_path / "run").mkdir()
    return tmp_path


def try_lock(path: Path) -> bool:
    with path.open("a") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(other, fcntl.LOCK_UN)
        return True


async def test_an_outage_holds_the_rigs_lock_until_it_ends(rig_dir: Path) -> None:
    async with rigproc.Outage():
        assert not try_lock(rig_dir / "rig.lock")  # what `rig.py up` and `down` take
    assert try_lock(rig_dir / "rig.lock")


async def test_the_lock_is_released_when_the_outage_fails(rig_dir: Path) -> None:
    with pytest.raises(RuntimeError):
        async with rigproc.Outage():
            raise RuntimeError("the API server was not ready")
    assert try_lock(rig_dir / "rig.lock")


def test_a_test_session_mark_made_during_the_run_is_removed(rig_dir: Path) -> None:
    mark = rig_dir / "run" / "owned-by-test-session"
    with rigproc.ownership_kept():
        mark.touch()  # a session whose `status` met an outage, then found the rig up
    assert not mark.exists()


def test_a_mark_that_was_there_before_the_run_stays(rig_dir: Path) -> None:
    mark = rig_dir / "run" / "owned-by-test-session"
    mark.touch()
    with rigproc.ownership_kept():
        pass
    assert mark.exists()
