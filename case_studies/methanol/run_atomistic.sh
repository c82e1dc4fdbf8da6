#!/bin/bash
# Atomistic OPLS-AA methanol reference run for the methanol case study.
#
# Inputs: the VOTCA csg-tutorials methanol system (1000 flexible OPLS-AA methanol molecules,
# 6000 atoms, no constraints, PME, 1.22 nm cut-offs, Nose-Hoover at 300 K, NVT in a 4.09 nm box,
# 1 fs time step; Debian package votca-tutorials).
# Output (in OUT, default /tmp/cg-methanol/atomistic): topol.tpr, traj.trr (positions AND forces
# every 0.25 ps, 201 frames over 50 ps of production after 10 ps of equilibration), confout.gro,
# ener.edr, md.log.
#
# Usage: case_studies/methanol/run_atomistic.sh [OUT] [NTHREADS]
# Runtime: ~15-25 min on one core (GROMACS 2022; 60 000 steps of 6000 atoms with PME).
set -euo pipefail
OUT=${1:-/tmp/cg-methanol/atomistic}
NT=${2:-1}
SRC=${VOTCA_METHANOL:-/usr/share/votca/csg-tutorials/methanol/atomistic}
command -v gmx >/dev/null || { echo "gmx (GROMACS) not found" >&2; exit 1; }
[ -f "$SRC/grompp.mdp" ] || { echo "$SRC/grompp.mdp not found (install votca-tutorials or set VOTCA_METHANOL)" >&2; exit 1; }
mkdir -p "$OUT"
cp "$SRC/conf.gro" "$SRC/topol.top" "$SRC/methanol_opls.itp" "$SRC/methanol.xml" "$SRC/settings.xml" "$OUT/"
cd "$OUT"
# The tutorial mdp runs 10 ns writing every 1 ps. Here: 10 ps equilibration (no output), then
# 50 ps production with x and f every 250 steps (0.25 ps), continued from the equilibration state.
sed -e 's/^nsteps .*/nsteps = 10000/' \
    -e 's/^nstxout .*/nstxout = 0/' \
    -e 's/^nstfout .*/nstfout = 0/' \
    -e 's/^nstvout .*/nstvout = 0/' \
    -e 's/^nstlog .*/nstlog = 5000/' \
    -e 's/^nstenergy .*/nstenergy = 5000/' \
    "$SRC/grompp.mdp" > equil.mdp
sed -e 's/^nsteps .*/nsteps = 50000/' \
    -e 's/^nstxout .*/nstxout = 250/' \
    -e 's/^nstfout .*/nstfout = 250/' \
    -e 's/^nstvout .*/nstvout = 0/' \
    -e 's/^nstlog .*/nstlog = 5000/' \
    -e 's/^nstenergy .*/nstenergy = 250/' \
    -e 's/^gen_vel .*/gen_vel = no/' \
    -e 's/^continuation .*/continuation = yes/' \
    "$SRC/grompp.mdp" > grompp.mdp
grep -q '^nstfout = 250' grompp.mdp   # force output must be on
grep -q '^gen_vel = no' grompp.mdp
gmx grompp -f equil.mdp -c conf.gro -p topol.top -o equil.tpr -maxwarn 5 > grompp_equil.log 2>&1
gmx mdrun -nt "$NT" -s equil.tpr -deffnm equil > mdrun_equil.log 2>&1
gmx grompp -f grompp.mdp -c equil.gro -t equil.cpt -p topol.top -o topol.tpr -maxwarn 5 > grompp.log 2>&1
gmx mdrun -nt "$NT" -s topol.tpr -o traj.trr -c confout.gro -e ener.edr -g md.log > mdrun.log 2>&1
echo "done: $OUT/traj.trr"
