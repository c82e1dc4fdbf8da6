"""ENNP speed on CPU, single thread, float32 — beside MACE and NequIP of matching size.

    python benchmarks/ennp_speed.py [--quick] [--skip-external] [--hessian-216] [--repeat N]
    python benchmarks/ennp_speed.py --only-nequip-steps [--repeat N]   # issue 17: molecule + training

Where users run it (``--only-nequip-steps``, also part of a full run): cgkit beside NequIP at
matched settings on a 20-atom molecule without cell (S22 pyrazine dimer, C8H8N4, 336 edges)
and on Si512: ms per energy+forces call (NequIP's model always adds the virial; on Si512
both compute stress) and per training step — batching of stored graphs, energy + forces
with the graph kept, loss 1:100 energy (eV/atom)² : force (eV/Å)², backward (the double
backward of forces), gradient clipping, AdamW — on 5 molecules and on Si512 (batch
``--si512-train-batch``, default 1). Training steps are timed with glibc's default
allocator and again with its mmap/trim thresholds raised (no page faults for reused
memory), for both models; ratio = NequIP time / cgkit time. The two models run in
alternating subprocess pairs (``--rounds``, default 2) and every time is the minimum over
rounds, since load from other jobs changes between subprocesses.
Results and their history: docs/ennp_speed.md.

Prints, per model and system (Si diamond 64/216/512 atoms, fcc Cu 500 atoms, rattled 0.03 Å,
r_cut 5 Å): ms per energy+forces call, ms per energy+forces+stress call and atoms·calls/s
(E+F+S). Models: cgkit presets 'small' (32x0e+32x1o+32x2e, 2 layers) and 'medium' (64
channels, 3 layers, body order 3); MACE (`mace-torch`: 64x0e+64x1o hidden, max_ell 3,
correlation 3, 2 interactions, radial MLP [64,64,64]) and NequIP (`nequip`: 3 layers,
l_max 2, 32 features, both parities, radial MLP 1x128), each beside a cgkit model with the
same layers, l_max, channels, parity, radial MLP, r_cut and body order (cgkit's MACE match
carries 64 channels at *every* l ≤ 3, a superset of MACE's 64x0e+64x1o hidden features).
The ratio printed is cgkit throughput / reference throughput (> 1: cgkit faster).

Every model is timed in its own subprocess with the same environment (1 thread, same
allocator settings); MACE and NequIP run in virtual environments the benchmark creates
under ``.bench-venvs/`` (pip install torch==2.13.0 plus the package; mace-torch pins
e3nn 0.4.4, nequip needs e3nn 0.6 — neither is a cgkit dependency). If one cannot be
installed or run, the reason is printed and the benchmark continues. Times are the minimum
over ``--repeat`` calls after a warm-up, measured as CPU time of the (single-threaded)
process, which is robust to other jobs on a shared machine. Hessians (cgkit 'small',
float64 and float32) are timed for Si64 (and Si216 with ``--hessian-216``).

Deployment export: the 'small' model is also exported to TorchScript (``cgkit model export``:
traced atomic energies + scripted gradient wrapper, runnable with torch alone) and timed
on the same graphs in the same worker ("cgkit small exported" rows, ratio = eager time /
exported time); ``--no-export`` skips it. The exported module is warmed up with three calls
per system first (TorchScript's profiling executor optimises after its first runs).
Measured (``--quick``, load average ~10 on the 2 cores): eager/exported time 1.09, 1.06,
0.93, 0.74 (E+F) and 1.11, 1.18, 1.09, 0.95 (E+F+S) on Si64, Si216, Si512, Cu500 — the
export runs at the eager speed within the noise; its use is deployment without Python/cgkit.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".bench-venvs"
SYSTEMS = ("Si64", "Si216", "Si512", "Cu500")
R_CUT = 5.0

#: cgkit models configured like the references (same layers, l_max, channels, parity,
#: radial MLP, body order, Bessel functions, r_cut)
MATCH = {
    "nequip": dict(channels=32, l_max=2, n_layers=3, full_parity=True, n_radial=8,
                   radial_hidden=128, radial_layers=1, correlation=1),
    "mace": dict(channels=[64, 64, 0, 0], l_max=3, n_layers=2, n_radial=8, radial_hidden=64, radial_layers=3,
                 correlation=3),
}
EXTERNAL = {"mace": ["mace-torch"], "nequip": ["nequip"]}
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       # e3nn 0.4.4 (pinned by mace-torch) loads its own constants file with torch.load
       "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


# ---------------------------------------------------------------------------- workers
def _atoms(name: str):
    from ase.build import bulk
    if name == "mol20":  # pyrazine dimer (C8H8N4, 20 atoms, no cell) from ASE's S22 set
        from ase.collections import s22
        return s22["Pyrazine_dimer"]
    if name.startswith("Si"):
        n = {"Si64": 2, "Si216": 3, "Si512": 4}[name]
        a = bulk("Si", "diamond", 5.43, cubic=True) * (n, n, n)
    else:
        a = bulk("Cu", "fcc", 3.61, cubic=True) * (5, 5, 5)
    a.rattle(0.03, seed=0)
    return a


def _frames(name: str, n: int) -> list:
    """``n`` copies of system ``name``, each rattled by 0.05 Å (seeds 1..n): a training batch."""
    out = []
    for k in range(n):
        a = _atoms(name).copy()
        a.rattle(0.05, seed=k + 1)
        out.append(a)
    return out


def _time(fn, repeat: int) -> float:
    """Minimum CPU seconds of ``fn()`` over ``repeat`` calls after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _worker_cgkit(spec: dict) -> dict:
    import torch
    torch.set_num_threads(1)
    from cgkit.nn import ENNP
    out = {}
    for name in spec["systems"]:
        atoms = _atoms(name)
        sp = sorted(set(atoms.get_chemical_symbols()))
        kw = dict(spec["config"])
        preset = kw.pop("preset", None)
        model = (ENNP.from_preset(preset, sp, R_CUT, dtype="float32", **kw) if preset
                 else ENNP(sp, R_CUT, dtype="float32", **kw))
        g = model.graph(atoms)
        ef = _time(lambda: model.compute(g, forces=True), spec["repeat"])
        efs = (_time(lambda: model.compute(g, forces=True, stress=True), spec["repeat"])
               if atoms.pbc.all() else None)
        out[name] = dict(n_atoms=len(atoms), n_edges=g.n_edges, ef=ef, efs=efs,
                         n_params=sum(p.numel() for p in model.parameters()))
        if spec.get("export") and atoms.pbc.all():
            out[f"exported_{name}"] = _time_exported(model, g, spec["repeat"])
    for name, bs in spec.get("train", []):
        out[f"train_{name}"] = _train_cgkit(spec["config"], name, bs, spec["repeat"])
    if spec.get("train"):  # again with glibc's mmap/trim thresholds raised (as for NequIP)
        _keep_freed_memory()
        for name, bs in spec["train"]:
            out[f"train_{name}"]["step_kept"] = _train_cgkit(spec["config"], name, bs, spec["repeat"])["step"]
    for name in spec.get("hessian", []):
        atoms = _atoms(name)
        for dt in ("float64", "float32"):
            model = ENNP.from_preset("small", ["Si"], R_CUT, dtype=dt)
            g = model.graph(atoms)
            t0, c0 = time.perf_counter(), time.process_time()
            H = model.hessian(g)
            out[f"hessian_{name}_{dt}"] = dict(seconds=time.perf_counter() - t0,
                                               cpu_seconds=time.process_time() - c0, shape=list(H.shape))
    return out


def _train_cgkit(config: dict, name: str, bs: int, repeat: int) -> dict:
    """CPU seconds of one training step of cgkit's trainer on a batch of ``bs`` frames: batching
    of the stored graphs, energy + forces with ``create_graph`` (a double backward follows),
    loss 1:100 energy (eV/atom)² : force (eV/Å)², backward, gradient clipping, AdamW step."""
    import torch

    from cgkit.data import batch_graphs
    from cgkit.nn import ENNP
    from cgkit.train.trainer import _loss_terms
    frames = _frames(name, bs)
    sp = sorted(set(frames[0].get_chemical_symbols()))
    model = ENNP(sp, R_CUT, dtype="float32", **config)
    graphs = []
    for a in frames:
        g = model.graph(a)
        g.targets = {"energy": torch.zeros(1), "forces": torch.zeros(len(a), 3), "weight": torch.ones(1)}
        graphs.append(g)
    weights = {"energy": 1.0, "forces": 100.0, "stress": 0.0}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    params = list(model.parameters())
    n_atoms = sum(len(a) for a in frames)

    def step():
        opt.zero_grad(set_to_none=False)
        sums, _ = _loss_terms(model, batch_graphs(graphs), weights, create_graph=True)
        loss = sums["energy"] / bs + 100.0 * sums["forces"] / (3 * n_atoms)
        loss.backward(inputs=params)  # as the trainer: parameter gradients only
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
    return dict(n_atoms=n_atoms, n_edges=sum(g.n_edges for g in graphs), batch=bs,
                step=_time(step, repeat))


def _time_exported(model, g, repeat: int) -> dict:
    """E+F and E+F+S CPU seconds of the TorchScript export of ``model`` on graph ``g``."""
    import tempfile

    import torch

    from cgkit.nn.export import export_torchscript
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model_ts.pt"
        export_torchscript(model, path)
        ts = torch.jit.load(str(path))
    args = (g.positions, g.cell[0], g.species, g.edge_index, g.cell_shifts)
    for _ in range(3):  # profiling runs of the TorchScript executor
        ts(*args, False)
        ts(*args, True)
    return dict(n_atoms=g.n_atoms, n_edges=g.n_edges, ef=_time(lambda: ts(*args, False), repeat),
                efs=_time(lambda: ts(*args, True), repeat))


def _worker_mace(spec: dict) -> dict:
    import numpy as np
    import torch
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    from ase.data import atomic_numbers
    from e3nn import o3
    from mace import data as mdata, modules, tools
    from mace.tools import torch_geometric
    out = {}
    for name in spec["systems"]:
        atoms = _atoms(name)
        Z = atomic_numbers[atoms.get_chemical_symbols()[0]]
        model = modules.ScaleShiftMACE(
            r_max=R_CUT, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
            num_interactions=2, num_elements=1, hidden_irreps=o3.Irreps("64x0e+64x1o"),
            MLP_irreps=o3.Irreps("16x0e"), gate=torch.nn.functional.silu,
            atomic_energies=np.zeros(1), avg_num_neighbors=30.0, atomic_numbers=[Z],
            correlation=3, radial_type="bessel", radial_MLP=[64, 64, 64],
            atomic_inter_scale=1.0, atomic_inter_shift=0.0)
        d = mdata.AtomicData.from_config(mdata.config_from_atoms(atoms),
                                         z_table=tools.AtomicNumberTable([Z]), cutoff=R_CUT)
        batch = torch_geometric.Batch.from_data_list([d])

        def call(stress):
            return model(batch.to_dict(), compute_force=True, compute_stress=stress, training=False)
        ef = _time(lambda: call(False), spec["repeat"])
        efs = _time(lambda: call(True), spec["repeat"])
        out[name] = dict(n_atoms=len(atoms), n_edges=int(batch["edge_index"].shape[1]), ef=ef, efs=efs,
                         n_params=sum(p.numel() for p in model.parameters()))
    return out


def _worker_nequip(spec: dict) -> dict:
    import torch
    torch.set_num_threads(1)
    from nequip.utils.global_state import set_global_state
    set_global_state()
    from nequip.data import AtomicDataDict, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform
    from nequip.model import NequIPGNNModel
    def build(atoms):
        sp = sorted(set(atoms.get_chemical_symbols()))
        model = NequIPGNNModel(seed=0, model_dtype="float32", type_names=sp, r_max=R_CUT,
                               num_layers=3, l_max=2, num_features=32, parity=True,
                               radial_mlp_depth=1, radial_mlp_width=128, num_bessels=8,
                               avg_num_neighbors=30.0)
        tm = ChemicalSpeciesToAtomTypeMapper(model_type_names=sp,
                                             chemical_species_to_atom_type_map={s: s for s in sp})
        nl = NeighborListTransform(r_max=R_CUT)
        return model, (lambda a: nl(tm(from_ase(a))))

    out = {}
    for name in spec["systems"]:
        atoms = _atoms(name)
        model, to_data = build(atoms)
        model.eval()
        data = to_data(atoms)

        def call():  # NequIP's model computes energy, forces and stress (virial) in one call
            return model({k: (v.clone() if torch.is_tensor(v) else v) for k, v in data.items()})
        assert "stress" in call()
        t = _time(call, spec["repeat"])
        periodic = bool(atoms.pbc.all())
        out[name] = dict(n_atoms=len(atoms), n_edges=int(data[AtomicDataDict.EDGE_INDEX_KEY].shape[1]),
                         ef=None if periodic else t, efs=t if periodic else None,
                         n_params=sum(p.numel() for p in model.parameters()))
    trains = [(name, bs, False) for name, bs in spec.get("train", [])]
    trains += [(name, bs, True) for name, bs in spec.get("train", [])]
    for name, bs, kept in trains:
        if kept:  # glibc's mmap/trim thresholds raised (as for cgkit)
            _keep_freed_memory()
        # the same step as cgkit's: batching, energy + forces (NequIP's model in training mode
        # keeps the graph for the double backward), loss 1:100, backward, clipping, AdamW
        frames = _frames(name, bs)
        model, to_data = build(frames[0])
        model.train()
        datas = [to_data(a) for a in frames]
        for d, a in zip(datas, frames):
            d[AtomicDataDict.TOTAL_ENERGY_KEY] = torch.zeros(1, 1)
            d[AtomicDataDict.FORCE_KEY] = torch.zeros(len(a), 3)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        params = list(model.parameters())
        n_atoms = sum(len(a) for a in frames)

        def step():
            batch = AtomicDataDict.batched_from_list([{k: v.clone() for k, v in d.items()} for d in datas])
            opt.zero_grad(set_to_none=False)
            res = model(batch)
            n = torch.bincount(batch[AtomicDataDict.BATCH_KEY]).to(torch.float32).reshape(-1, 1)
            e_loss = (((res[AtomicDataDict.TOTAL_ENERGY_KEY] - batch[AtomicDataDict.TOTAL_ENERGY_KEY]) / n) ** 2).sum()
            f_loss = ((res[AtomicDataDict.FORCE_KEY] - batch[AtomicDataDict.FORCE_KEY]) ** 2).sum()
            loss = e_loss / bs + 100.0 * f_loss / (3 * n_atoms)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
        if kept:
            out[f"train_{name}"]["step_kept"] = _time(step, spec["repeat"])
            continue
        out[f"train_{name}"] = dict(n_atoms=n_atoms, n_edges=sum(int(d[AtomicDataDict.EDGE_INDEX_KEY].shape[1])
                                                                 for d in datas),
                                    batch=bs, step=_time(step, spec["repeat"]))
    return out


def _keep_freed_memory():
    """Raise glibc's mmap (256 MB) and trim (1 GB) thresholds: freed memory is reused instead of
    being unmapped and faulted in (zeroed) again on the next step. Same as the environment
    ``MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824``."""
    import ctypes
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallopt(-3, 256 * 2**20)
    libc.mallopt(-1, 1024 * 2**20)


WORKERS = {"cgkit": _worker_cgkit, "mace": _worker_mace, "nequip": _worker_nequip}


# ---------------------------------------------------------------------------- driver
def _python_for(kind: str) -> tuple[str | None, str]:
    """The interpreter that runs ``kind``, creating its virtual environment if needed."""
    if kind == "cgkit":
        return sys.executable, ""
    venv = VENVS / kind
    py = venv / "bin" / "python"
    marker = venv / ".cgkit-bench-ok"
    if marker.exists():
        return str(py), ""
    VENVS.mkdir(exist_ok=True)
    log = VENVS / f"{kind}.log"
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(py), "-m", "pip", "install", "-q", "torch==2.13.0"],
             [str(py), "-m", "pip", "install", "-q", *EXTERNAL[kind]]]
    print(f"[setup] creating {venv} (torch==2.13.0 + {' '.join(EXTERNAL[kind])}); log: {log}", flush=True)
    with open(log, "a") as fh:
        for cmd in steps:
            if cmd[1] == "-m" and cmd[2] == "venv" and py.exists():
                continue
            r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                return None, f"'{' '.join(cmd[-3:])}' failed (exit {r.returncode}); see {log}"
    marker.touch()
    return str(py), ""


def _run(kind: str, spec: dict, timeout: float) -> tuple[dict | None, str]:
    py, why = _python_for(kind)
    if py is None:
        return None, why
    env = {**os.environ, **ENV}
    if kind == "cgkit":
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        r = subprocess.run([py, str(Path(__file__).resolve()), "--worker", kind, json.dumps(spec)],
                           capture_output=True, text=True, timeout=timeout, env=env, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:]), ""
    tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
    return None, f"worker failed (exit {r.returncode}): {tail}"


def _fmt_ms(t):
    return f"{1e3 * t:9.1f}" if t is not None else f"{'—':>9s}"


def _row(label, name, res):
    r = res[name]
    print(f"{label:22s} {name:7s} {r['n_edges']:7d} {_fmt_ms(r['ef'])} {_fmt_ms(r['efs'])} "
          f"{r['n_atoms'] / r['efs']:14.0f}", flush=True)


def _min_merge(old: dict | None, new: dict) -> dict:
    """Per case and time field, the smaller of two worker results."""
    if old is None:
        return new
    for case, fields in new.items():
        for k in ("ef", "efs", "step", "step_kept"):
            if fields.get(k) is not None and old[case].get(k) is not None:
                old[case][k] = min(old[case][k], fields[k])
    return old


def _nequip_steps(args, repeat: int) -> None:
    """cgkit vs NequIP at matched settings where users run them: one energy+forces call on a
    20-atom molecule (no cell) and on Si512 (with stress: NequIP's model always computes it),
    and one training step (batching, E+F with the graph kept, loss with forces, double
    backward, clipping, AdamW) on 5 molecules and on Si512."""
    systems = ["mol20", "Si512"]
    train = [["mol20", 5], ["Si512", int(args.si512_train_batch)]]
    print("\ncgkit beside NequIP (matching configuration: 3 layers, l_max 2, 32 channels, both "
          "parities, radial MLP 1x128, 8 Bessel, r_cut 5 Å, float32); ratio = NequIP time / cgkit time",
          flush=True)
    # the two models alternate over --rounds subprocess pairs; every time is the minimum over
    # rounds (load from other jobs changes between subprocesses and would bias one ratio)
    ref = mine = None
    for _ in range(max(1, int(args.rounds))):
        r, why = _run("nequip", {"systems": systems, "repeat": repeat, "train": train}, args.timeout)
        if r is None:
            print(f"nequip: not timed — {why}")
            return
        m, why = _run("cgkit", {"systems": systems, "config": MATCH["nequip"], "repeat": repeat,
                                "train": train}, args.timeout)
        if m is None:
            print(f"cgkit (nequip match): {why}")
            return
        ref, mine = _min_merge(ref, r), _min_merge(mine, m)
    print(f"{'case':34s} {'atoms':>6s} {'edges':>7s} {'NequIP ms':>10s} {'cgkit ms':>10s} {'ratio':>6s}")

    def line(label, r_ref, r_mine, t_ref, t_mine):
        print(f"{label:34s} {r_mine['n_atoms']:6d} {r_mine['n_edges']:7d} {_fmt_ms(t_ref):>10s} "
              f"{_fmt_ms(t_mine):>10s} {t_ref / t_mine:6.2f}", flush=True)
    r, m = ref["mol20"], mine["mol20"]
    line("mol20 E+F (NequIP: E+F+virial)", r, m, r["ef"], m["ef"])
    r, m = ref["Si512"], mine["Si512"]
    line("Si512 E+F+S", r, m, r["efs"], m["efs"])
    for name, bs in train:
        r, m = ref[f"train_{name}"], mine[f"train_{name}"]
        line(f"{name} train step, batch {bs}", r, m, r["step"], m["step"])
        line(f"{name} train step, batch {bs}, kept mem", r, m, r["step_kept"], m["step_kept"])
    print("('kept mem': glibc mmap/trim thresholds raised for both models (MALLOC_MMAP_THRESHOLD_/"
          "MALLOC_TRIM_THRESHOLD_): sensitivity of the step to page faults)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 repeats; MACE/NequIP comparison on Si512 and Cu500 only")
    ap.add_argument("--skip-external", action="store_true", help="do not install/run MACE and NequIP")
    ap.add_argument("--hessian-216", action="store_true", help="also time the 216-atom Hessian")
    ap.add_argument("--repeat", type=int, default=None, help="timed calls per case (default 5, --quick 2)")
    ap.add_argument("--no-export", action="store_true", help="do not time the TorchScript export of 'small'")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per subprocess")
    ap.add_argument("--only-nequip-steps", action="store_true",
                    help="only the molecule / training-step comparison with NequIP (skips presets and MACE)")
    ap.add_argument("--no-nequip-steps", action="store_true",
                    help="skip the molecule / training-step comparison with NequIP")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating NequIP/cgkit subprocess pairs for the molecule / training comparison; "
                         "times are the minimum over rounds")
    ap.add_argument("--si512-train-batch", type=int, default=1,
                    help="structures per training step on Si512 (default 1; the molecule uses 5)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(WORKERS[args.worker](json.loads(args.spec))), flush=True)
        return
    repeat = args.repeat or (2 if args.quick else 5)
    if args.only_nequip_steps:
        _nequip_steps(args, repeat)
        return
    header = (f"{'model':22s} {'system':7s} {'edges':>7s} {'E+F ms':>9s} {'E+F+S ms':>9s} "
              f"{'atoms·calls/s':>14s}")
    print("single thread, float32, r_cut 5 Å; times = min CPU time over", repeat, "calls\n" + header)
    hess = ["Si64"] + (["Si216"] if args.hessian_216 else [])
    for preset in ("small", "medium"):
        spec = {"systems": list(SYSTEMS), "config": {"preset": preset}, "repeat": repeat,
                "hessian": hess if preset == "small" else [],
                "export": preset == "small" and not args.no_export}
        res, why = _run("cgkit", spec, args.timeout)
        if res is None:
            print(f"cgkit {preset}: {why}")
            continue
        for name in SYSTEMS:
            _row(f"cgkit {preset}", name, res)
        for name in SYSTEMS:
            if f"exported_{name}" in res:
                e, x = res[name], res[f"exported_{name}"]
                _row(f"cgkit {preset} exported", name, {name: x})
                print(f"{'':22s} eager/exported time: E+F {e['ef'] / x['ef']:.2f}, "
                      f"E+F+S {e['efs'] / x['efs']:.2f}", flush=True)
        for key, v in res.items():
            if key.startswith("hessian_"):
                print(f"Hessian (cgkit small, {key.split('_')[2]}) {key.split('_')[1]}: "
                      f"{v['seconds']:.1f} s wall, {v['cpu_seconds']:.1f} s CPU for a "
                      f"{v['shape'][0]}x{v['shape'][1]} matrix")
    if args.skip_external:
        return
    if not args.no_nequip_steps:
        _nequip_steps(args, repeat)
    if args.only_nequip_steps:
        return
    compare = ["Si512", "Cu500"] if args.quick else list(SYSTEMS)
    print("\ncgkit beside MACE and NequIP (matching configuration); ratio = cgkit E+F+S "
          "throughput / reference\n" + header + f" {'params':>8s} {'ratio':>6s}")
    for kind in ("nequip", "mace"):
        ref, why = _run(kind, {"systems": compare, "repeat": repeat}, args.timeout)
        if ref is None:
            print(f"{kind}: not timed — {why}")
            continue
        mine, why = _run("cgkit", {"systems": compare, "config": MATCH[kind], "repeat": repeat}, args.timeout)
        if mine is None:
            print(f"cgkit ({kind} match): {why}")
            continue
        for name in compare:
            for label, res in ((kind, ref), (f"cgkit ({kind} match)", mine)):
                r = res[name]
                ratio = f"{ref[name]['efs'] / mine[name]['efs']:6.2f}" if res is mine else ""
                print(f"{label:22s} {name:7s} {r['n_edges']:7d} {_fmt_ms(r['ef'])} {_fmt_ms(r['efs'])} "
                      f"{r['n_atoms'] / r['efs']:14.0f} {r['n_params']:8d} {ratio}", flush=True)


if __name__ == "__main__":
    main()
