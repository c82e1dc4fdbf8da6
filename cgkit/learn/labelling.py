"""Teacher labelling on one machine or many, resumable after a kill.

Teacher calls are independent, so they run through an existing engine, never a home-made
scheduler: ``backend="serial"`` (in this process), ``"local"`` (a
:class:`concurrent.futures.ProcessPoolExecutor` of ``workers`` spawned processes) or
``"dask"`` (a ``dask.distributed`` client: a running scheduler's ``address``, a
``LocalCluster`` of ``workers`` processes, or a ``dask-jobqueue`` cluster such as
``SLURMCluster`` built from ``jobqueue={"kind": "slurm", ...kwargs}``). Every backend labels
each frame with a fresh teacher built from the same *spec* (``ase:EMT``, ``cgkit:sw``, a model
file, ``ase:tblite.ase.TBLite:method=GFN2-xTB`` for any importable ASE calculator), so results
are identical whichever runs them.

Labels are stored exactly (ASE .traj), one file per frame in a :class:`LabelStore`, addressed by a hash of the frame's
atomic numbers, positions, cell and pbc and the teacher spec, and written atomically: a labelling
run killed at any point is resumed by calling it again, and no frame is labelled twice.
Units: energies eV, forces eV/Å, stress eV/Å³ (ASE's).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError

__all__ = ["Labeller", "LabelStore", "frame_key", "BACKENDS"]

BACKENDS = ("serial", "local", "dask")


def frame_key(atoms, teacher: str) -> str:
    """Content hash (hex, 20 chars) of a frame and the teacher that labels it."""
    h = hashlib.sha256()
    h.update(teacher.encode())
    h.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(atoms.cell.array, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(atoms.pbc, dtype=np.int8).tobytes())
    q = atoms.get_initial_charges()
    if np.any(q):
        h.update(np.ascontiguousarray(q, dtype=np.float64).tobytes())
    return h.hexdigest()[:20]


class LabelStore:
    """A folder of labelled frames, one ASE trajectory file (binary, exact to the bit) per
    :func:`frame_key`, written atomically."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.traj"

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def get(self, key: str):
        from ase.io import read
        return read(str(self.path(key)), format="traj")

    def put(self, key: str, atoms) -> None:
        from ase.io import write
        final = self.path(key)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
        write(str(tmp), atoms, format="traj")
        os.replace(tmp, final)

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.traj"))


def _label_one(payload):
    """Worker function (module level, so pools and Dask can pickle it): label one frame."""
    spec, atoms, stress = payload
    from ase.calculators.singlepoint import SinglePointCalculator
    from ..io_potential import load_calculator
    calc = load_calculator(spec)
    a = atoms.copy()
    a.calc = calc
    res = {"energy": float(a.get_potential_energy()), "forces": np.array(a.get_forces(), dtype=np.float64)}
    if stress and a.pbc.all():
        res["stress"] = np.array(a.get_stress(), dtype=np.float64)
    for name, v in res.items():
        if not np.all(np.isfinite(v)):
            raise InputError(f"the teacher {spec!r} returned non-finite {name} for a frame of "
                             f"{a.get_chemical_formula()}; check the teacher and the structure")
    b = atoms.copy()
    b.calc = SinglePointCalculator(b, **res)
    return b


class Labeller:
    """Labels frames with a teacher given by its spec, through ``backend`` (see module docs).

    ``Labeller("ase:EMT", backend="local", workers=2, store="run/labels")``;
    ``labeller(frames)`` returns labelled copies in input order (SinglePointCalculator results),
    reading already stored labels instead of recomputing them. ``labeller.n_computed`` counts the
    teacher calls made by this object."""

    def __init__(self, teacher: str, *, backend: str = "serial", workers: int = 2, store=None,
                 address: str | None = None, jobqueue: dict | None = None, stress: bool = True):
        if not isinstance(teacher, str) or not teacher:
            raise InputError("the teacher must be given as a spec string (e.g. 'ase:EMT', "
                             "'cgkit:sw', a model file, or 'ase:package.module.Calculator:k=v')")
        if backend not in BACKENDS:
            raise InputError(f"unknown labelling backend {backend!r}: use one of {', '.join(BACKENDS)}")
        if int(workers) < 1:
            raise InputError(f"labelling workers must be >= 1, got {workers}")
        if backend == "dask":
            try:
                import distributed  # noqa: F401
            except ImportError:
                raise InputError("backend 'dask' needs the dask.distributed package "
                                 "(pip install 'dask[distributed]'; dask-jobqueue for SLURM/PBS)") from None
        from ..io_potential import load_calculator
        load_calculator(teacher)  # refuse a bad spec here, before any work is sent out
        self.teacher, self.backend, self.workers = teacher, backend, int(workers)
        self.address, self.jobqueue, self.stress = address, jobqueue, bool(stress)
        self.store = LabelStore(store) if store is not None else None
        self.n_computed = 0

    def __call__(self, frames: Sequence) -> list:
        frames = list(frames)
        keys = [frame_key(a, self.teacher) for a in frames]
        out = [None] * len(frames)
        todo = []
        for i, k in enumerate(keys):
            if self.store is not None and k in self.store:
                out[i] = self.store.get(k)
            else:
                todo.append(i)
        # one call per distinct frame (duplicates share the label)
        first = {}
        for i in todo:
            first.setdefault(keys[i], i)
        unique = list(first.values())
        payloads = [(self.teacher, frames[i], self.stress) for i in unique]
        for i, labelled in zip(unique, self._run(payloads)):
            if self.store is not None:
                self.store.put(keys[i], labelled)
            out[i] = labelled
            self.n_computed += 1
        for i in todo:
            if out[i] is None:
                out[i] = out[first[keys[i]]].copy()
                out[i].calc = out[first[keys[i]]].calc
        return out

    def _run(self, payloads):
        """Yields labelled frames in order (stored as they arrive, so a kill loses at most the
        frames in flight)."""
        if not payloads:
            return
        if self.backend == "serial":
            for p in payloads:
                yield _label_one(p)
        elif self.backend == "local":
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn")) as pool:
                yield from pool.map(_label_one, payloads)
        else:
            yield from self._run_dask(payloads)

    def _run_dask(self, payloads):
        from distributed import Client
        cluster = None
        if self.address:
            client = Client(self.address)
        elif self.jobqueue:
            cluster = _jobqueue_cluster(self.jobqueue)
            cluster.scale(jobs=self.workers)
            client = Client(cluster)
        else:
            from distributed import LocalCluster
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        try:
            futures = client.map(_label_one, payloads, pure=False)
            for f in futures:
                yield f.result()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _jobqueue_cluster(spec: dict):
    spec = dict(spec)
    kind = str(spec.pop("kind", "")).lower()
    try:
        import dask_jobqueue
    except ImportError:
        raise InputError("labelling.jobqueue needs the dask-jobqueue package (pip install dask-jobqueue)") from None
    classes = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
               "htcondor": "HTCondorCluster"}
    if kind not in classes:
        raise InputError(f"labelling.jobqueue.kind must be one of {', '.join(classes)}, got {kind!r}")
    return getattr(dask_jobqueue, classes[kind])(**spec)
