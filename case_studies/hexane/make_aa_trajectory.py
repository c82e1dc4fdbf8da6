"""Run GROMACS on VOTCA's all-atom hexane inputs and keep a trajectory WITH forces.

Needs Debian's ``votca-tutorials`` (inputs in /usr/share/votca/csg-tutorials/hexane/atomistic)
and ``gromacs`` (``apt-get install -y votca-tutorials gromacs``). Force field: OPLS-AA
(VOTCA's topol.top), 300 K, v-rescale, PME, 1 fs steps, VOTCA's grompp.mdp otherwise.

Two system sizes:

* ``--molecules 1000`` (VOTCA's own box: 20 000 atoms, 6.04 nm): continues from VOTCA's
  equilibrated conf.gro (gen_vel = no) and writes x and f every ``--nout`` steps;
* ``--molecules N`` < 1000 (default 250): a cube holding about N molecules (by centre of mass)
  is cut out of VOTCA's equilibrated conf.gro at its liquid density and made periodic;
  molecules clashing across the new boundary are removed (a few), the box is energy-minimised,
  equilibrated for ``--equil`` steps at 1 bar (Berendsen barostat, new Maxwell-Boltzmann
  velocities at 300 K), then the production run at constant volume writes x and f every
  ``--nout`` steps.

The full trajectory stays in ``--workdir`` (not committed). Into ``case_studies/hexane/data/``
go only small derived files:

- ``aa_subset.gro`` / ``aa_subset.trr``: the first ``--subset`` molecules, all frames,
  positions and forces (the forces are those of the full system);
- ``hexane_cg.psf`` / ``hexane_cg.trr``: the whole system mapped with mappings/hexane_3bead.yaml
  (basic force map): bead positions, mapped forces and box, for force matching;
- ``summary.json``: run parameters, wall times, GROMACS ns/day and file list.

Usage (one mdrun thread; about 20 min for the defaults on one free core)::

    python case_studies/hexane/make_aa_trajectory.py --molecules 250 --equil 15000 --nsteps 80000 --nout 400
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VOTCA = Path("/usr/share/votca/csg-tutorials/hexane/atomistic")
ATOMS_PER_MOLECULE = 20


def _set(mdp: str, key: str, value) -> str:
    pat = re.compile(rf"^\s*{re.escape(key)}\s*=.*$", re.MULTILINE | re.IGNORECASE)
    line = f"{key:<24s} = {value}"
    return pat.sub(line, mdp) if pat.search(mdp) else mdp + "\n" + line + "\n"


def _mdp(base: str, **kw) -> str:
    for k, v in kw.items():
        base = _set(base, k, v)
    return base


def cut_subbox(conf: Path, out: Path, n_molecules: int) -> tuple[int, float]:
    """Cut a cube holding about ``n_molecules`` molecules (by centre of mass, at the density of
    VOTCA's equilibrated liquid) out of ``conf`` and write it to ``out`` as a periodic box of
    the same side. Molecules that clash with others across the new periodic boundary (heavy
    atoms closer than 2.5 Å, any atoms closer than 1.2 Å) are removed one at a time, worst
    first. Returns (molecules kept, box side Å)."""
    import warnings

    import MDAnalysis as mda
    import numpy as np
    from MDAnalysis.lib.distances import capped_distance
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(conf))
    L0 = float(u.dimensions[0])
    L = L0 * (n_molecules / (u.atoms.n_atoms // ATOMS_PER_MOLECULE)) ** (1.0 / 3.0)
    mols = []
    for k in range(u.atoms.n_atoms // ATOMS_PER_MOLECULE):
        m = u.atoms[ATOMS_PER_MOLECULE * k: ATOMS_PER_MOLECULE * (k + 1)]
        p = m.positions.astype(float)
        p = p[0] + ((p - p[0] + 0.5 * L0) % L0 - 0.5 * L0)  # whole molecule
        p -= np.floor(p.mean(0) / L0) * L0  # centre of mass inside the old box
        if np.all(p.mean(0) < L):
            mols.append((m, p))
    box = np.array([L, L, L, 90.0, 90.0, 90.0], dtype=np.float32)
    heavy = np.array([n.startswith("C") for n in mols[0][0].names])
    while True:
        pos = np.concatenate([p for _, p in mols]).astype(np.float32)
        mol = np.repeat(np.arange(len(mols)), ATOMS_PER_MOLECULE)
        hv = np.tile(heavy, len(mols))
        pairs, d = capped_distance(pos, pos, 2.5, box=box)
        i, j = pairs[:, 0], pairs[:, 1]
        bad = (mol[i] != mol[j]) & ((d < 1.2) | (hv[i] & hv[j]))
        if not bad.any():
            break
        worst = np.bincount(np.concatenate([mol[i[bad]], mol[j[bad]]]), minlength=len(mols)).argmax()
        mols.pop(int(worst))
    for m, p in mols:
        m.positions = p
    sel = sum([m for m, _ in mols[1:]], mols[0][0])
    sel.dimensions = box
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel.write(str(out))
    return len(mols), L


def _run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{r.stderr[-3000:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/cgkit_hexane_aa", help="GROMACS run directory")
    ap.add_argument("--molecules", type=int, default=250, help="hexane molecules (1000 = VOTCA's box)")
    ap.add_argument("--equil", type=int, default=15000, help="NPT equilibration steps for a cut box")
    ap.add_argument("--nsteps", type=int, default=80000, help="production MD steps (dt = 1 fs)")
    ap.add_argument("--nout", type=int, default=400, help="write x and f every this many steps")
    ap.add_argument("--threads", type=int, default=1, help="threads for mdrun (-nt)")
    ap.add_argument("--subset", type=int, default=20, help="molecules kept in aa_subset.*")
    ap.add_argument("--data", default=str(HERE / "data"), help="output folder for derived data")
    ap.add_argument("--reuse", action="store_true", help="skip mdrun if traj.trr already exists")
    args = ap.parse_args(argv)

    gmx = shutil.which("gmx") or shutil.which("gmx_mpi")
    if gmx is None or not VOTCA.is_dir():
        print("needs GROMACS and votca-tutorials: apt-get install -y votca-tutorials gromacs",
              file=sys.stderr)
        return 2
    if not 10 <= args.molecules <= 1000:
        raise SystemExit("--molecules must be between 10 and 1000")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    base = (VOTCA / "grompp.mdp").read_text()
    top = (VOTCA / "topol.top").read_text()

    def write_top(n):
        (work / "topol.top").write_text(re.sub(r"(?m)^(Protein\s+)\d+\s*$", rf"\g<1>{n}", top))
    write_top(args.molecules)
    trr = work / "traj.trr"
    timing = {}
    quiet = {"nstxout": 0, "nstvout": 0, "nstfout": 0}
    if not (args.reuse and trr.exists()):
        grompp = [gmx, "grompp", "-p", "topol.top", "-maxwarn", "2"]
        mdrun = [gmx, "mdrun", "-nt", str(args.threads), "-ntmpi", "1"] if args.threads > 1 else \
            [gmx, "mdrun", "-nt", "1"]
        if args.molecules == 1000:
            shutil.copy(VOTCA / "conf.gro", work / "start.gro")
        else:
            n_kept, L = cut_subbox(VOTCA / "conf.gro", work / "cut.gro", args.molecules)
            write_top(n_kept)
            timing["cut_box_A"], timing["molecules_after_clash_removal"] = L, n_kept
            (work / "em.mdp").write_text(_mdp(base, integrator="steep", nsteps=1000, nstenergy=0,
                                              nstlog=100, **quiet))
            _run(grompp + ["-f", "em.mdp", "-c", "cut.gro", "-o", "em.tpr"], work)
            _run(mdrun + ["-s", "em.tpr", "-deffnm", "em"], work)
            (work / "eq.mdp").write_text(_mdp(base, nsteps=args.equil, nstenergy=500, nstlog=5000,
                                              gen_vel="yes", gen_temp=300, pcoupl="berendsen",
                                              tau_p=1.0, ref_p=1.0, compressibility="4.5e-5",
                                              **quiet))
            _run(grompp + ["-f", "eq.mdp", "-c", "em.gro", "-o", "eq.tpr"], work)
            t0 = time.perf_counter()
            _run(mdrun + ["-s", "eq.tpr", "-deffnm", "eq"], work)
            timing["equilibration_s"] = time.perf_counter() - t0
            shutil.copy(work / "eq.gro", work / "start.gro")
        (work / "prod.mdp").write_text(_mdp(base, nsteps=args.nsteps, nstxout=args.nout,
                                            nstfout=args.nout, nstvout=0, nstlog=args.nout,
                                            nstenergy=args.nout, gen_vel="no", continuation="yes",
                                            pcoupl="no"))
        _run(grompp + ["-f", "prod.mdp", "-c", "start.gro", "-o", "topol.tpr"], work)
        t0 = time.perf_counter()
        _run(mdrun + ["-s", "topol.tpr", "-deffnm", "traj"], work)
        timing["production_s"] = time.perf_counter() - t0
        m = re.search(r"Performance:\s+([0-9.]+)", (work / "traj.log").read_text())
        timing["gromacs_ns_per_day"] = float(m.group(1)) if m else None
        timing["mdrun_threads"] = args.threads

    sys.path.insert(0, str(ROOT))
    import MDAnalysis as mda

    from cgkit.mapping import Mapping
    from cgkit.trajectory import CGTrajectoryWriter, open_trajectory

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    for stale in data.glob(".*_offsets.*"):
        stale.unlink()
    u = mda.Universe(str(work / "topol.tpr"), str(trr))
    sub = u.atoms[: ATOMS_PER_MOLECULE * args.subset]
    sub.write(str(data / "aa_subset.gro"))
    with mda.Writer(str(data / "aa_subset.trr"), n_atoms=sub.n_atoms) as w:
        for _ in u.trajectory:
            w.write(sub)
    traj = open_trajectory(str(work / "topol.tpr"), str(trr))
    mapping = Mapping.from_yaml(ROOT / "mappings" / "hexane_3bead.yaml", traj.topology)
    with CGTrajectoryWriter(data / "hexane_cg.trr", mapping) as w:
        for cg in mapping.iter_map(traj):
            w.write(cg)
    summary = {"source": str(VOTCA), "molecules": u.atoms.n_atoms // ATOMS_PER_MOLECULE,
               "atoms": u.atoms.n_atoms, "box_A": float(u.dimensions[0]),
               "equilibration_steps": 0 if args.molecules == 1000 else args.equil,
               "nsteps": args.nsteps, "dt_fs": 1.0, "output_every_steps": args.nout,
               "frames": len(u.trajectory), "subset_molecules": args.subset,
               "mapping": "mappings/hexane_3bead.yaml", "timing": timing,
               "files": {"aa_structure": "aa_subset.gro", "aa_trajectory": "aa_subset.trr",
                         "cg_topology": "hexane_cg.psf", "cg_trajectory": "hexane_cg.trr"},
               "units": {"trr": "GROMACS (nm, kJ/mol/nm, ps); cgkit readers convert to Å, eV/Å, fs"}}
    if not timing and (data / "summary.json").exists():  # --reuse: keep the recorded timings
        summary["timing"] = json.loads((data / "summary.json").read_text()).get("timing", {})
    (data / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
