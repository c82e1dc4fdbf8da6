"""Labelling through the serial loop, a local process pool and a real Dask scheduler gives the
same labels; a run killed with SIGKILL resumes without relabelling anything."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from cgkit.errors import InputError
from cgkit.learn import Labeller, LabelStore, frame_key

ROOT = Path(__file__).resolve().parents[2]


def frames(n=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = bulk("Cu", "fcc", 3.61, cubic=True).repeat((2, 1, 1))
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        out.append(a)
    return out


def same(a, b):
    assert a.get_potential_energy() == b.get_potential_energy()
    np.testing.assert_array_equal(a.get_forces(), b.get_forces())
    np.testing.assert_array_equal(a.get_stress(), b.get_stress())
    np.testing.assert_array_equal(a.positions, b.positions)


def test_serial_labels_equal_the_teacher_and_duplicates_are_labelled_once():
    fs = frames(3)
    lab = Labeller("ase:EMT")
    out = lab(fs + [fs[0].copy()])
    assert lab.n_computed == 3
    for a, b in zip(out, fs + [fs[0]]):
        c = b.copy()
        c.calc = EMT()
        assert a.get_potential_energy() == pytest.approx(c.get_potential_energy(), abs=1e-12)
        np.testing.assert_allclose(a.get_forces(), c.get_forces(), atol=1e-12)


def test_local_pool_gives_the_serial_labels(tmp_path):
    fs = frames(4)
    ref = Labeller("ase:EMT")(fs)
    out = Labeller("ase:EMT", backend="local", workers=2, store=tmp_path / "labels")(fs)
    for a, b in zip(out, ref):
        same(a, b)
    assert len(LabelStore(tmp_path / "labels").keys()) == 4


def test_dask_local_cluster_gives_the_local_pool_labels(tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'dask[distributed]')")
    from distributed import LocalCluster
    fs = frames(4, seed=1)
    pool = Labeller("ase:EMT", backend="local", workers=2)(fs)
    # a real scheduler with 2 worker processes, started here; the labeller connects by address
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        lab = Labeller("ase:EMT", backend="dask", address=cluster.scheduler_address)
        out = lab(fs)
    assert lab.n_computed == 4
    for a, b in zip(out, pool):
        same(a, b)


def test_a_labelling_run_killed_with_sigkill_resumes_without_relabelling(tmp_path):
    fs = frames(6, seed=2)
    store = tmp_path / "labels"
    from ase.io import read, write
    write(str(tmp_path / "frames.extxyz"), fs, format="extxyz")
    fs = read(str(tmp_path / "frames.extxyz"), ":")  # the frames exactly as the killed run saw them
    spec = "ase:tests.learn.slow_teacher.SlowEMT:delay=0.4"
    script = ("import sys; from ase.io import read; from cgkit.learn import Labeller\n"
              f"Labeller({spec!r}, store={str(store)!r})(read({str(tmp_path / 'frames.extxyz')!r}, ':'))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while len(list(store.glob("*.traj"))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = len(LabelStore(store).keys())
    assert 2 <= done < 6, "the run must be killed part-way through"
    lab = Labeller(spec, store=store)
    out = lab(fs)
    assert lab.n_computed == 6 - done
    ref = Labeller("ase:EMT")(fs)
    for a, b in zip(out, ref):
        same(a, b)  # stored labels are exact: the resumed set equals an uninterrupted run's
    again = Labeller(spec, store=store)
    again(fs)
    assert again.n_computed == 0


def test_frame_key_depends_on_content_and_teacher():
    a, b = frames(2)
    assert frame_key(a, "ase:EMT") == frame_key(a.copy(), "ase:EMT")
    assert frame_key(a, "ase:EMT") != frame_key(b, "ase:EMT")
    assert frame_key(a, "ase:EMT") != frame_key(a, "cgkit:sw")


def test_bad_labelling_settings_are_refused():
    with pytest.raises(InputError, match="unknown labelling backend"):
        Labeller("ase:EMT", backend="mpi")
    with pytest.raises(InputError, match="workers must be >= 1"):
        Labeller("ase:EMT", backend="local", workers=0)
    with pytest.raises(InputError):
        Labeller("ase:NoSuchCalculator")


def test_a_teacher_returning_nan_is_refused_and_nothing_is_stored(tmp_path):
    lab = Labeller("ase:tests.learn.slow_teacher.NaNForces", store=tmp_path / "labels")
    with pytest.raises(InputError, match="non-finite forces"):
        lab(frames(1))
    assert LabelStore(tmp_path / "labels").keys() == []
