#!/bin/bash
# Atomistic SPC/E reference run for the water case study.
#
# Inputs: the VOTCA csg-tutorials SPC/E system (2180 rigid SPC/E molecules, SETTLE,
# reaction field, 1.2 nm cut-offs, sd integrator at 300 K; Debian package votca-tutorials).
# Output (in OUT, default /tmp/cg-water/atomistic): topol.tpr, traj.trr (positions AND
# forces every 1 ps, 201 frames over 200 ps), confout.gro, ener.edr, md.log.
#
# Usage: case_studies/water/run_atomistic.sh [OUT] [NTHREADS]
# Runtime: ~30-60 min on one core (GROMACS 2022).
set -euo pipefail
OUT=${1:-/tmp/cg-water/atomistic}
NT=${2:-1}
SRC=${VOTCA_SPCE:-/usr/share/votca/csg-tutorials/spce/atomistic}
command -v gmx >/dev/null || { echo "gmx (GROMACS) not found" >&2; exit 1; }
[ -f "$SRC/grompp.mdp" ] || { echo "$SRC/grompp.mdp not found (install votca-tutorials or set VOTCA_SPCE)" >&2; exit 1; }
mkdir -p "$OUT"
cp "$SRC/conf.gro" "$SRC/topol.top" "$SRC/water.xml" "$OUT/"
# The tutorial mdp writes every 2 ps for 20 ns; here: 200 ps, x and f every 1 ps (500 steps).
sed -e 's/^nsteps .*/nsteps = 100000/' \
    -e 's/^nstxout .*/nstxout = 500/' \
    -e 's/^nstfout .*/nstfout = 500/' \
    -e 's/^nstvout .*/nstvout = 0/' \
    -e 's/^nstlog .*/nstlog = 5000/' \
    -e 's/^nstenergy .*/nstenergy = 500/' \
    "$SRC/grompp.mdp" > "$OUT/grompp.mdp"
grep -q '^nstfout = 500' "$OUT/grompp.mdp"   # force output must be on
cd "$OUT"
gmx grompp -f grompp.mdp -c conf.gro -p topol.top -o topol.tpr -maxwarn 5 > grompp.log 2>&1
gmx mdrun -nt "$NT" -s topol.tpr -o traj.trr -c confout.gro -e ener.edr -g md.log > mdrun.log 2>&1
echo "done: $OUT/traj.trr"
