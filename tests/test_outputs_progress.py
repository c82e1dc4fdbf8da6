"""cgkit.outputs.OutputFolder (atomic, refuses to mix) and cgkit.progress (non-TTY lines with ETA)."""
from __future__ import annotations

import io
import os

import pytest

from cgkit.errors import InputError
from cgkit.outputs import MANIFEST, OutputFolder
from cgkit.progress import LineProgress


def test_output_folder_atomic_and_refuses(tmp_path):
    out = tmp_path / "run"
    with OutputFolder(out, command="t") as stage:
        assert not out.exists()  # nothing visible while running
        (stage / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1" and (out / MANIFEST).is_file()
    with pytest.raises(InputError, match="not empty.*--overwrite"):
        OutputFolder(out).__enter__()
    # a failed run leaves the old result untouched and no staging folder behind
    with pytest.raises(RuntimeError):
        with OutputFolder(out, overwrite=True) as stage:
            (stage / "b.txt").write_text("partial")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not (out / "b.txt").exists() and (out / "a.txt").read_text() == "1"
    # overwrite removes the earlier run's files but keeps the user's own
    (out / "notes.md").write_text("mine")
    with OutputFolder(out, overwrite=True) as stage:
        (stage / "c.txt").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "c.txt", "notes.md"])


def test_output_folder_refuses_foreign_folder_and_unwritable(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.txt").write_text("x")
    with pytest.raises(InputError, match="did not write"):
        OutputFolder(tmp_path / "mine", overwrite=True).__enter__()
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        OutputFolder(tmp_path / "file").__enter__()
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(InputError, match="cannot create"):
            OutputFolder(ro / "out").__enter__()


def test_line_progress_reports_eta_without_a_terminal():
    buf = io.StringIO()
    bar = LineProgress(total=10, desc="work", unit="step", interval=0.0, file=buf)
    for _ in range(4):
        bar.update(1)
    bar.set_postfix(loss="0.1")
    bar.close()
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("work: 1/10 step (10%)") and "ETA" in lines[0]
    assert lines[-1].startswith("work: 4/10 step") and "done" in lines[-1] and "loss=0.1" in lines[-1]
