"""Run GROMACS on VOTCA's all-atom hexane inputs and keep a short trajectory WITH forces.

Needs Debian's ``votca-tutorials`` (inputs in /usr/share/votca/csg-tutorials/hexane/atomistic)
and ``gromacs`` (``apt-get install -y votca-tutorials gromacs``). The system is 1000 OPLS-AA
hexane molecules (20 000 atoms, 6.04 nm cubic box, 300 K, v-rescale, PME); the run continues
from VOTCA's equilibrated conf.gro (gen_vel = no) and writes x and f every ``--nout`` steps.

The full trajectory stays in ``--workdir`` (not committed). Into ``case_studies/hexane/data/``
go only small derived files:

- ``aa_subset.gro`` / ``aa_subset.trr``: the first ``--subset`` molecules, all frames,
  positions and forces (the forces are those of the full system);
- ``hexane_cg.psf`` / ``hexane_cg.trr``: the whole system mapped with mappings/hexane_3bead.yaml
  (basic force map): bead positions, mapped forces and box, for force matching;
- ``summary.json``: run parameters and file list.

Usage::

    python case_studies/hexane/make_aa_trajectory.py --nsteps 2000 --nout 100 --threads 2
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VOTCA = Path("/usr/share/votca/csg-tutorials/hexane/atomistic")


def _set(mdp: str, key: str, value) -> str:
    pat = re.compile(rf"^\s*{re.escape(key)}\s*=.*$", re.MULTILINE | re.IGNORECASE)
    line = f"{key:<24s} = {value}"
    return pat.sub(line, mdp) if pat.search(mdp) else mdp + "\n" + line + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/cgkit_hexane_aa", help="GROMACS run directory")
    ap.add_argument("--nsteps", type=int, default=2000, help="MD steps (dt = 1 fs)")
    ap.add_argument("--nout", type=int, default=100, help="write x and f every this many steps")
    ap.add_argument("--threads", type=int, default=2, help="OpenMP threads for mdrun")
    ap.add_argument("--subset", type=int, default=50, help="molecules kept in aa_subset.*")
    ap.add_argument("--data", default=str(HERE / "data"), help="output folder for derived data")
    ap.add_argument("--reuse", action="store_true", help="skip mdrun if traj.trr already exists")
    args = ap.parse_args(argv)

    gmx = shutil.which("gmx") or shutil.which("gmx_mpi")
    if gmx is None or not VOTCA.is_dir():
        print("needs GROMACS and votca-tutorials: apt-get install -y votca-tutorials gromacs",
              file=sys.stderr)
        return 2
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for f in ("conf.gro", "topol.top"):
        shutil.copy(VOTCA / f, work / f)
    mdp = (VOTCA / "grompp.mdp").read_text()
    for k, v in {"nsteps": args.nsteps, "nstxout": args.nout, "nstfout": args.nout, "nstvout": 0,
                 "nstlog": args.nout, "nstenergy": args.nout, "gen_vel": "no",
                 "continuation": "yes"}.items():
        mdp = _set(mdp, k, v)
    (work / "grompp.mdp").write_text(mdp)
    trr = work / "traj.trr"
    if not (args.reuse and trr.exists()):
        subprocess.run([gmx, "grompp", "-f", "grompp.mdp", "-c", "conf.gro", "-p", "topol.top",
                        "-o", "topol.tpr", "-maxwarn", "2"], cwd=work, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([gmx, "mdrun", "-s", "topol.tpr", "-deffnm", "traj", "-nt", str(args.threads),
                        "-ntmpi", "1"], cwd=work, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    sys.path.insert(0, str(ROOT))
    import MDAnalysis as mda

    from cgkit.mapping import Mapping
    from cgkit.trajectory import CGTrajectoryWriter, open_trajectory

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    u = mda.Universe(str(work / "topol.tpr"), str(trr))
    sub = u.atoms[: 20 * args.subset]
    sub.write(str(data / "aa_subset.gro"))
    with mda.Writer(str(data / "aa_subset.trr"), n_atoms=sub.n_atoms) as w:
        for _ in u.trajectory:
            w.write(sub)
    traj = open_trajectory(str(work / "topol.tpr"), str(trr))
    mapping = Mapping.from_yaml(ROOT / "mappings" / "hexane_3bead.yaml", traj.topology)
    with CGTrajectoryWriter(data / "hexane_cg.trr", mapping) as w:
        for cg in mapping.iter_map(traj):
            w.write(cg)
    summary = {"source": str(VOTCA), "nsteps": args.nsteps, "dt_fs": 1.0, "output_every_steps": args.nout,
               "frames": len(u.trajectory), "atoms": u.atoms.n_atoms, "molecules": u.atoms.n_atoms // 20,
               "subset_molecules": args.subset, "mapping": "mappings/hexane_3bead.yaml",
               "files": {"aa_structure": "aa_subset.gro", "aa_trajectory": "aa_subset.trr",
                         "cg_topology": "hexane_cg.psf", "cg_trajectory": "hexane_cg.trr"},
               "units": {"trr": "GROMACS (nm, kJ/mol/nm, ps); cgkit readers convert to Å, eV/Å, fs"}}
    (data / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
