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


def test_sigterm_leaves_no_partial_output(tmp_path):
    """A killed command (SIGTERM, as batch systems send) leaves neither --out nor a staging folder."""
    import signal
    import subprocess
    import sys
    import time

    code = ("import sys, time; from cgkit import cli; from cgkit.outputs import OutputFolder\n"
            "def slow(args):\n"
            "    with OutputFolder(args.out) as out:\n"
            "        (out / 'half.txt').write_text('x'); print('ready', flush=True); time.sleep(60)\n"
            "p = cli.build_parser(); sub = [a for a in p._actions if hasattr(a, 'choices') and a.choices][0]\n"
            "q = sub.add_parser('slow'); q.add_argument('--out'); q.set_defaults(func=slow)\n"
            "orig = cli.build_parser; cli.build_parser = lambda: p\n"
            "sys.exit(cli.main(['slow', '--out', sys.argv[1]]))\n")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
