"""ENNP speed on CPU, single thread, float32 — beside MACE and NequIP of matching size.

    python benchmarks/ennp_speed.py [--quick] [--skip-external] [--hessian-216] [--repeat N]

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
    if name.startswith("Si"):
        n = {"Si64": 2, "Si216": 3, "Si512": 4}[name]
        a = bulk("Si", "diamond", 5.43, cubic=True) * (n, n, n)
    else:
        a = bulk("Cu", "fcc", 3.61, cubic=True) * (5, 5, 5)
    a.rattle(0.03, seed=0)
    return a


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
        efs = _time(lambda: model.compute(g, forces=True, stress=True), spec["repeat"])
        out[name] = dict(n_atoms=len(atoms), n_edges=g.n_edges, ef=ef, efs=efs,
                         n_params=sum(p.numel() for p in model.parameters()))
        if spec.get("export"):
            out[f"exported_{name}"] = _time_exported(model, g, spec["repeat"])
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
    out = {}
    for name in spec["systems"]:
        atoms = _atoms(name)
        sp = atoms.get_chemical_symbols()[0]
        model = NequIPGNNModel(seed=0, model_dtype="float32", type_names=[sp], r_max=R_CUT,
                               num_layers=3, l_max=2, num_features=32, parity=True,
                               radial_mlp_depth=1, radial_mlp_width=128, num_bessels=8,
                               avg_num_neighbors=30.0)
        model.eval()
        data = ChemicalSpeciesToAtomTypeMapper(model_type_names=[sp],
                                               chemical_species_to_atom_type_map={sp: sp})(from_ase(atoms))
        data = NeighborListTransform(r_max=R_CUT)(data)

        def call():  # NequIP's model computes energy, forces and stress (virial) in one call
            return model({k: (v.clone() if torch.is_tensor(v) else v) for k, v in data.items()})
        assert "stress" in call()
        efs = _time(call, spec["repeat"])
        out[name] = dict(n_atoms=len(atoms), n_edges=int(data[AtomicDataDict.EDGE_INDEX_KEY].shape[1]),
                         ef=None, efs=efs, n_params=sum(p.numel() for p in model.parameters()))
    return out


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 repeats; MACE/NequIP comparison on Si512 and Cu500 only")
    ap.add_argument("--skip-external", action="store_true", help="do not install/run MACE and NequIP")
    ap.add_argument("--hessian-216", action="store_true", help="also time the 216-atom Hessian")
    ap.add_argument("--repeat", type=int, default=None, help="timed calls per case (default 5, --quick 2)")
    ap.add_argument("--no-export", action="store_true", help="do not time the TorchScript export of 'small'")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per subprocess")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(WORKERS[args.worker](json.loads(args.spec))), flush=True)
        return
    repeat = args.repeat or (2 if args.quick else 5)
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
