"""Export a :class:`~cgkit.forcematch.TabulatedPotential` to LAMMPS (``units metal``: eV, Å, ps).

Writes ``pair.table`` (``pair_style table``), ``bond.table``, ``angle.table``,
``dihedral.table`` (``bond_style``/``angle_style``/``dihedral_style table``), a data file
(``atom_style molecular``) and an input script. Table formats follow the LAMMPS manual:

* pair/bond: ``index r E F`` with F = -dE/dr (eV/Å); ``N n`` header (pairs also ``R rlo rhi``);
* angle: 0…180 degrees, ``index θ E F`` with F = -dE/dθ in eV/degree;
* dihedral: ``N n DEGREES``, φ from -180 up to (not including) 180 degrees, F = -dE/dφ in
  eV/degree; IUPAC sign convention (trans = 180°), the same as cgkit's.

Values outside the fitted range are the potential's own continuation (linear / zero beyond
the pair cutoff), sampled so that LAMMPS never meets a distance outside a table.
Non-bonded exclusions are translated into ``special_bonds lj`` weights (1-2/1-3/1-4 by bond
count) or ``neigh_modify exclude molecule/intra all``; other exclusion patterns cannot be
expressed in LAMMPS and raise an error.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError, NotSupportedError
from ..forcematch.geometry import type_key
from ..io_lammps import lammps_box  # noqa: F401  (public here too: one implementation)
from ..topology import Topology

__all__ = ["write_lammps", "read_lammps_table", "lammps_special_bonds", "lammps_box"]


def _fmt_rows(x, e, f) -> str:
    return "\n".join(f"{k + 1} {a:.10g} {b:.12g} {c:.12g}" for k, (a, b, c) in enumerate(zip(x, e, f)))


def lammps_special_bonds(top: Topology) -> str:
    """The LAMMPS command reproducing ``top.exclusions`` (raises if impossible)."""
    excl = {tuple(p) for p in top.exclusions.tolist()}
    adj = [[] for _ in range(top.n_particles)]
    for a, b in top.bonds.tolist():
        adj[a].append(b)
        adj[b].append(a)
    for depth in range(0, 4):
        within = {tuple(p) for p in Topology._pairs_within(top.n_particles, adj, depth).tolist()}
        if within == excl:
            w = ["0.0" if k <= depth else "1.0" for k in (1, 2, 3)]
            return f"special_bonds lj {' '.join(w)}"
    mol = top.molecule
    intra = {(i, j) for i in range(top.n_particles) for j in range(i + 1, top.n_particles) if mol[i] == mol[j]} \
        if top.n_particles <= 5000 else None
    if intra is not None and intra == excl:
        return "special_bonds lj 0.0 0.0 0.0\nneigh_modify exclude molecule/intra all"
    raise NotSupportedError("the non-bonded exclusions are neither 'up to 1-2/1-3/1-4 bonded "
                            "neighbours' nor 'all intramolecular pairs'; LAMMPS cannot express them "
                            "— regenerate the CG topology with one of those exclusion rules")


def _ensure_table_lengths(n: int) -> int:
    if n < 10:
        raise InputError("use at least 10 table points")
    return int(n)


def _tilts_ok(lower) -> bool:
    """LAMMPS accepts tilts up to half the box length (|xy| ≤ lx/2, |xz| ≤ lx/2, |yz| ≤ ly/2)."""
    lx, ly = lower[0, 0], lower[1, 1]
    return (abs(lower[1, 0]) <= 0.5 * lx + 1e-9 and abs(lower[2, 0]) <= 0.5 * lx + 1e-9
            and abs(lower[2, 1]) <= 0.5 * ly + 1e-9)


def _refuse_damped_dihedrals(potential, engine: str) -> None:
    """Raise NotSupportedError naming every sin³-damped dihedral table (U(φ)·sin³θ₁·sin³θ₂,
    Bulacu et al. 2013): neither LAMMPS's ``dihedral_style table`` nor GROMACS's tabulated
    dihedral (type 8) can multiply a table by the bending factor, and GROMACS's restricted
    dihedral / CBT (types 10, 11) are analytic forms, not tables."""
    tables = list(getattr(potential, "tables", []))
    for sub in getattr(potential, "terms", []):  # a SumPotential (tables + fixed terms)
        tables += list(getattr(sub, "tables", []))
    damped = [t.label for t in tables if getattr(t, "damping", None)]
    if damped:
        raise NotSupportedError(
            f"{', '.join(damped)}: a sin3-damped dihedral table (U(phi)*sin^3(theta1)*sin^3(theta2)) cannot be "
            f"written for {engine}: its tabulated dihedrals have no bending damping (and the analytic "
            "restricted-bending forms are not tables). Run this model in cgkit MD, or refit without "
            "damping (SplineForceMatching without dihedral_damping, `cgkit fm` without --dihedral-damping) "
            f"to export it to {engine}")


def write_lammps(potential, directory, *, positions=None, box=None, masses=None, species=None,
                 n_points: int = 2000, r_inner: float | None = None, temperature: float = 300.0,
                 timestep_fs: float = 5.0, n_steps: int = 10000, run_forces_only: bool = False,
                 langevin_damping_fs: float = 100.0) -> dict:
    """Write LAMMPS tables, data file and input script into ``directory``.

    potential : TabulatedPotential (bead types, topology and tables), or a
        :class:`~cgkit.forcematch.threebody.ThreeBodyPotential` whose three-body terms use the
        ``cos2`` basis (written as ``pair_style hybrid/overlay table ... sw sw sw``: this LAMMPS has
        no ``sw/angle/table``; spline three-body terms are refused)
    positions : (n, 3) Å configuration for the data file (optional: tables only without it)
    box : (3,) lengths or (3, 3) cell (rows a, b, c), Å. A triclinic cell is rotated into
        LAMMPS's frame (:func:`lammps_box`): the data file then holds ``positions @ Q`` and the
        returned ``"rotation"`` is Q, so that LAMMPS's positions/forces map back as ``x @ Q.T``.
        Tilts beyond LAMMPS's limits (|xy|, |xz| > lx/2, |yz| > ly/2) are refused: choose a
        more compact cell of the same lattice (e.g. ASE ``niggli_reduce``).
    masses : (n,) or per-type dict, amu;
    species : (n,) type indices (default: the order of ``potential.type_names`` must be given)
    n_points : points per table; r_inner : Å, shortest pair distance tabulated
    run_forces_only : the input script does ``run 0`` and dumps forces (for checks)
    langevin_damping_fs : damping time of ``fix langevin`` in fs (100 fs = 0.1 ps, the friction
        cgkit's CG MD uses; 1 ps let a 5 fs CG run heat up to ~500 K in the hexane case study)

    A model with a bead Coulomb term (``SumPotential([tables, BeadCoulombPotential])`` from
    ``cgkit fm --coulomb``) is written with ``atom_style full`` (bead charges in the data file),
    ``pair_style hybrid/overlay table ... coul/long RC`` + ``kspace_style pppm ACC`` (ACC = the
    term's relative accuracy, which LAMMPS defines as cgkit does; RC = the real-space cutoff Ewald
    would use for this box) and ``special_bonds lj/coul`` with the topology's exclusions (the
    excluded pairs lose their whole Coulomb interaction, k-space part included, as in cgkit).
    Needs a periodic box (open systems: run them in cgkit).

    Returns {"pair": path, "bond": ..., "data": path, "input": path} of what was written, plus
    ``"rotation"`` (3, 3) when a data file is written (the identity for orthogonal boxes).
    """
    n_points = _ensure_table_lengths(n_points)
    from ..forcematch.coulomb import split_coulomb
    potential, coul = split_coulomb(potential)
    if potential is None:
        raise NotSupportedError("the model is a bare Coulomb term without tables; export a fitted CG model "
                                "(tables + Coulomb)")
    _refuse_damped_dihedrals(potential, "LAMMPS")
    tables3 = list(getattr(potential, "tables3", []))
    sw = _sw_entries(potential.type_names, tables3) if tables3 else None  # refuse before writing
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tn = potential.type_names
    tid = {t: k + 1 for k, t in enumerate(tn)}
    written = {}
    kw = {}
    by_kind = {k: [t for t in potential.tables if t.kind == k] for k in ("pair", "bond", "angle", "dihedral")}
    # ---- pair
    if by_kind["pair"]:
        lines = ["# cgkit pair tables (units metal: Å, eV, eV/Å)"]
        coeffs = []
        rc = potential.cutoff
        for t in by_kind["pair"]:
            lo = r_inner if r_inner is not None else min(0.5, 0.5 * t.x0)
            r = np.linspace(lo, t.x_max, n_points)
            U, f = t(r)
            U[-1], f[-1] = t.U[-1], t.force[-1]  # value at the cutoff itself (not beyond)
            key = f"PAIR_{t.types[0]}_{t.types[1]}"
            lines += ["", key, f"N {n_points} R {lo:.10g} {t.x_max:.10g}", "", _fmt_rows(r, U, f)]
            a, b = sorted((tid[t.types[0]], tid[t.types[1]]))
            coeffs.append(f"pair_coeff {a} {b} pair.table {key} {t.x_max:.10g}")
        have = {tuple(sorted((tid[t.types[0]], tid[t.types[1]]))) for t in by_kind["pair"]}
        missing = [(a, b) for a in range(1, len(tn) + 1) for b in range(a, len(tn) + 1) if (a, b) not in have]
        if missing:
            r = np.linspace(0.5, rc, 10)
            lines += ["", "PAIR_NONE", f"N 10 R 0.5 {rc:.10g}", "", _fmt_rows(r, 0 * r, 0 * r)]
            coeffs += [f"pair_coeff {a} {b} pair.table PAIR_NONE" for a, b in missing]
        (d / "pair.table").write_text("\n".join(lines) + "\n")
        written["pair"] = d / "pair.table"
        kw["pair"] = [f"pair_style table spline {n_points}"] + coeffs
    if sw is not None:
        styles, coeffs3 = [], []
        for m, text in enumerate(sw):
            p = d / f"threebody_{m + 1}.sw"
            p.write_text(text)
            written[f"threebody_{m + 1}"] = p
            styles.append("sw")
            coeffs3.append(f"pair_coeff * * sw {m + 1} {p.name} " + " ".join(tn))
        if "pair" in kw:
            table_coeffs = [c.replace("pair_coeff", "", 1).split() for c in kw["pair"][1:]]
            kw["pair"] = ([f"pair_style hybrid/overlay table spline {n_points} " + " ".join(styles)]
                          + [f"pair_coeff {c[0]} {c[1]} table " + " ".join(c[2:]) for c in table_coeffs] + coeffs3)
        else:
            kw["pair"] = ["pair_style hybrid/overlay " + " ".join(styles)] + coeffs3
    # ---- bonded
    names = {"bond": "BOND", "angle": "ANGLE", "dihedral": "DIH"}
    type_ids = {}
    for kind in ("bond", "angle", "dihedral"):
        ts = by_kind[kind]
        if not ts:
            continue
        lines = [f"# cgkit {kind} tables (units metal: eV; "
                 + ("Å, eV/Å)" if kind == "bond" else "degrees, eV/degree)")]
        coeffs = []
        for k, t in enumerate(ts):
            key = f"{names[kind]}_{'_'.join(t.types)}"
            if kind == "bond":
                x = np.linspace(max(0.01, t.x0 - 1.0), t.x_max + 2.0, n_points)
                U, f = t(x)
                head = f"N {n_points}"
                xo = x
            elif kind == "angle":
                deg = np.linspace(0.0, 180.0, n_points)
                U, f = t(np.radians(deg))
                f = f * math.pi / 180.0
                imin = int(np.argmin(U))
                head = f"N {n_points} EQ {deg[imin]:.10g}"
                xo = deg
            else:
                deg = np.linspace(-180.0, 180.0, n_points + 1)[:-1]
                U, f = t(np.radians(deg))
                f = f * math.pi / 180.0
                head = f"N {n_points} DEGREES"
                xo = deg
            lines += ["", key, head, "", _fmt_rows(xo, U, f)]
            coeffs.append(f"{kind}_coeff {k + 1} {kind}.table {key}")
            type_ids[(kind, t.types)] = k + 1
        p = d / f"{kind}.table"
        p.write_text("\n".join(lines) + "\n")
        written[kind] = p
        kw[kind] = [f"{kind}_style table spline {n_points}"] + coeffs
    if positions is None:
        if coul is not None:
            import warnings

            from ..errors import CgkitWarning
            warnings.warn("the model's bead Coulomb term is not written: LAMMPS gets only its short-range tables "
                          "(coul/long + kspace_style pppm need the data file and input script, written when "
                          "positions and a periodic box are given); run the charged model in cgkit MD or export "
                          "it with positions", CgkitWarning, stacklevel=2)
        return written
    # ---- data file
    top = potential.topology
    pos = np.asarray(positions, dtype=np.float64)
    if pos.shape != (top.n_particles, 3):
        raise InputError(f"positions must be ({top.n_particles}, 3) for this CG topology, got {pos.shape}")
    if species is None:
        raise InputError("give species (bead type index per bead) for the data file")
    species = np.asarray(species, dtype=np.int64)
    if box is None:
        raise InputError("give the box (Å) for the LAMMPS data file")
    cell = np.asarray(box, dtype=np.float64)
    cell = np.diag(cell) if cell.shape == (3,) else cell.reshape(3, 3)
    orthogonal = np.abs(cell - np.diag(np.diag(cell))).max() <= 1e-9 and np.all(np.diag(cell) > 0)
    if orthogonal:
        Q, lower = np.eye(3), cell
    else:
        Q, lower = lammps_box(cell)
        if not _tilts_ok(lower):
            raise NotSupportedError(
                f"the cell's tilts (xy {lower[1, 0]:.4g}, xz {lower[2, 0]:.4g}, yz {lower[2, 1]:.4g} Å) "
                f"exceed LAMMPS's limits (half of lx {lower[0, 0]:.4g} / ly {lower[1, 1]:.4g} Å); "
                "reduce the cell first (e.g. ase.build.niggli_reduce) and pass the reduced one")
    pos = pos @ Q
    frac = pos @ np.linalg.inv(lower)
    image = np.floor(frac).astype(np.int64)
    pos = pos - image @ lower
    if isinstance(masses, dict):
        mtype = [float(masses[t]) for t in tn]
    else:
        m = np.broadcast_to(np.asarray(masses if masses is not None else 1.0, dtype=float), (len(pos),))
        mtype = []
        for k in range(len(tn)):
            sel = m[species == k]
            if len(sel) and np.ptp(sel) > 1e-9:
                raise InputError(f"beads of type {tn[k]} have different masses; LAMMPS needs one mass per type")
            mtype.append(float(sel[0]) if len(sel) else 1.0)
    bonded = {}
    for kind in ("bond", "angle", "dihedral"):
        idx = getattr(top, kind + "s")
        rows = []
        for r in idx:
            key = (kind, type_key(kind, tuple(tn[species[a]] for a in r)))
            if key in type_ids:
                rows.append((type_ids[key], r))
        bonded[kind] = rows
    out = ["LAMMPS data file written by cgkit (units metal)", "",
           f"{len(pos)} atoms", f"{len(tn)} atom types"]
    for kind in ("bond", "angle", "dihedral"):
        if bonded[kind]:
            out += [f"{len(bonded[kind])} {kind}s", f"{len(by_kind[kind])} {kind} types"]
    out += ["", f"0 {lower[0, 0]:.10g} xlo xhi", f"0 {lower[1, 1]:.10g} ylo yhi", f"0 {lower[2, 2]:.10g} zlo zhi"]
    if not orthogonal:
        out += [f"{lower[1, 0]:.10g} {lower[2, 0]:.10g} {lower[2, 1]:.10g} xy xz yz"]
    out += ["", "Masses", ""]
    out += [f"{k + 1} {m:.10g}  # {tn[k]}" for k, m in enumerate(mtype)]
    if coul is None:
        out += ["", "Atoms # molecular", ""]
        out += [f"{i + 1} {int(top.molecule[i]) + 1} {int(species[i]) + 1} {x:.10f} {y:.10f} {z:.10f} "
                f"{image[i, 0]} {image[i, 1]} {image[i, 2]}" for i, (x, y, z) in enumerate(pos)]
    else:
        if len(coul.charges) != len(pos):
            raise InputError(f"the Coulomb term holds {len(coul.charges)} bead charges but the CG system has "
                             f"{len(pos)} beads")
        if coul.method == "direct":
            raise NotSupportedError("the model's Coulomb term is a direct sum for open systems; LAMMPS's coul/long + "
                                    "pppm is periodic: refit with --coulomb auto/ewald/pme on periodic frames, or run "
                                    "the open system in cgkit")
        coul.check_neutral()
        out += ["", "Atoms # full", ""]
        out += [f"{i + 1} {int(top.molecule[i]) + 1} {int(species[i]) + 1} {q:.12g} {x:.10f} {y:.10f} {z:.10f} "
                f"{image[i, 0]} {image[i, 1]} {image[i, 2]}"
                for i, ((x, y, z), q) in enumerate(zip(pos, coul.charges))]
    for kind, title in (("bond", "Bonds"), ("angle", "Angles"), ("dihedral", "Dihedrals")):
        if bonded[kind]:
            out += ["", title, ""]
            out += [f"{n + 1} {t} " + " ".join(str(int(a) + 1) for a in r) for n, (t, r) in enumerate(bonded[kind])]
    (d / "cg.data").write_text("\n".join(out) + "\n")
    written["data"] = d / "cg.data"
    # ---- input script
    script = ["# LAMMPS input written by cgkit: CG system with tabulated force-matched potentials",
              "units metal", "atom_style molecular" if coul is None else "atom_style full", "boundary p p p"]
    for kind in ("bond", "angle", "dihedral"):
        if kind in kw:
            script += kw[kind][:1]
    script += ["read_data cg.data"]
    for kind in ("pair", "bond", "angle", "dihedral"):
        if kind in kw:
            script += (kw[kind] if kind == "pair" else kw[kind][1:])
    special = lammps_special_bonds(top)
    if coul is not None:
        script = [line for line in script if not line.startswith("pair_")]
        script += _coulomb_pair_lines(kw.get("pair"), coul.lammps_parameters(lower, len(pos)))
        if "neigh_modify exclude" in special:
            raise NotSupportedError("the CG topology excludes all intramolecular pairs, which LAMMPS writes as "
                                    "neigh_modify exclude; with kspace (coul/long + pppm) that drops the k-space "
                                    "correction of those pairs. Use bonded exclusions (1-2/1-3/1-4) or run in cgkit")
        special = special.replace("special_bonds lj ", "special_bonds lj/coul ")
        written["coulomb"] = {"kspace": "pppm", **coul.lammps_parameters(lower, len(pos))}
    elif "pair" not in kw:
        script += ["pair_style zero 1.0", "pair_coeff * *"]
    script += [special, "neighbor 2.0 bin", "neigh_modify every 1 delay 0 check yes"]
    if run_forces_only:
        script += ["thermo_style custom step pe ebond eangle edihed evdwl" + (" ecoul elong" if coul else ""),
                   "dump f all custom 1 forces.dump id type x y z fx fy fz",
                   "dump_modify f sort id format float %.12g", "run 0"]
    else:
        script += [f"velocity all create {temperature} 12345 mom yes rot yes",
                   f"timestep {timestep_fs / 1000.0}  # ps",
                   f"fix md all langevin {temperature} {temperature} {langevin_damping_fs / 1000.0} 4242  # damping ps",
                   "fix nve all nve", "thermo 1000",
                   "dump traj all custom 1000 traj.lammpstrj id mol type x y z",
                   f"run {n_steps}"]
    (d / "in.cg").write_text("\n".join(script) + "\n")
    written["input"] = d / "in.cg"
    written["rotation"] = Q
    return written


def _coulomb_pair_lines(pair_lines, par) -> list[str]:
    """The pair_style/pair_coeff lines of the tables (``pair_lines``: the table-only or
    table + sw hybrid lines, or None) overlaid with ``coul/long`` and followed by ``kspace_style
    pppm``."""
    rc, acc = par["r_cut"], par["accuracy"]
    if not pair_lines:
        return [f"pair_style coul/long {rc:.10g}", "pair_coeff * *", f"kspace_style pppm {acc:.6g}"]
    style, coeffs = pair_lines[0], pair_lines[1:]
    if style.startswith("pair_style table "):
        spec = style[len("pair_style "):]
        coeffs = [f"pair_coeff {c.split()[1]} {c.split()[2]} table " + " ".join(c.split()[3:]) for c in coeffs]
        style = f"pair_style hybrid/overlay {spec}"
    return ([f"{style} coul/long {rc:.10g}"] + coeffs
            + ["pair_coeff * * coul/long", f"kspace_style pppm {acc:.6g}"])


def _sw_decomposition(w, tol: float = 1e-9):
    """(c₀, λ) pairs with λ ≥ 0 such that Σ λ (c - c₀)² = w₀ + w₁c + w₂c² (LAMMPS's sw takes
    only λ ≥ 0), by non-negative least squares over c₀ ∈ {-1, -0.95, ..., 1} ∪ {-w₁/(2w₂)};
    None when the quadratic is not such a sum (it is negative somewhere)."""
    from scipy.optimize import nnls
    w0, w1, w2 = (float(v) for v in w)
    c0s = list(np.linspace(-1.0, 1.0, 41))
    if w2 > 0:
        c0s.append(-w1 / (2 * w2))
    c0s = np.array(c0s)
    M = np.stack([c0s ** 2, -2 * c0s, np.ones_like(c0s)])  # rows: constant, linear, quadratic coefficient
    target = np.array([w0, w1, w2])
    lam, _ = nnls(M, target)
    scale = max(np.abs(target).max(), 1e-300)
    if np.abs(M @ lam - target).max() > tol * scale:
        return None
    return [(float(c), float(l)) for c, l in zip(c0s, lam) if l > 1e-15 * scale]


def _sw_entries(type_names, tables3) -> list[str]:
    """LAMMPS ``pair_style sw`` files reproducing cgkit three-body terms (overlaid sw styles).

    A ``cos2`` term f(c) = w₀ + w₁c + w₂c² is written as Σ_m λ_m (c - c₀m)² with λ_m ≥ 0
    (:func:`_sw_decomposition`; a quadratic that is negative somewhere cannot be written so and
    is refused); sw's φ₃ = λε(cos θ - c₀)² exp(γσ/(r_ij - aσ)) exp(γσ/(r_ik - aσ)) with ε = 1 eV,
    σ = 1 Å is cgkit's term, and A = 0 switches the two-body part off. Every (i, j, k) element
    triplet gets an entry (λ = 0 where there is no term); the radial parameters of the i-j pair
    come from the (i, j, j) entry, so all terms sharing a centre/neighbour type pair must share
    a and γ."""
    bad = [t.label for t in tables3 if t.spec.basis_kind != "cos2"]
    if bad:
        raise NotSupportedError(
            f"{bad}: spline three-body terms need LAMMPS's sw/angle/table or threebody/table pair "
            "style, which this LAMMPS (lmp) does not have; fit them with basis='cos2' (exported "
            "through pair_style sw) or run the CG MD in cgkit")
    radial, parts = {}, {}
    for t in tables3:
        c, n1, n2 = t.types
        for nb in (n1, n2):
            key = (c, nb)
            if key in radial and radial[key] != (t.spec.a, t.spec.gamma):
                raise NotSupportedError(f"three-body terms with centre {c} and neighbour {nb} use different "
                                        f"radial parameters {radial[key]} and {(t.spec.a, t.spec.gamma)}; "
                                        "LAMMPS's sw takes one (a, gamma) per type pair")
            radial[key] = (t.spec.a, t.spec.gamma)
        dec = _sw_decomposition(t.coef)
        if dec is None:
            w = ", ".join(f"{v:.4g}" for v in t.coef)
            raise NotSupportedError(f"{t.label}: f(cos θ) = {w} (constant, linear, quadratic, eV) is negative for "
                                    "some cos θ, so it is not a sum of LAMMPS sw terms λ(cos θ - c₀)² with λ ≥ 0; "
                                    "run the CG MD in cgkit")
        parts[(c, n1, n2)] = parts[(c, n2, n1)] = dec
    n_styles = max(len(v) for v in parts.values())
    a_max = max(a for a, _ in radial.values())
    files = []
    for m in range(n_styles):
        rows = ["# cgkit three-body terms as Stillinger-Weber entries (units metal: eV, Å); "
                "i j k epsilon sigma a lambda gamma costheta0 A B p q tol"]
        for i in type_names:
            for j in type_names:
                for k in type_names:
                    a, g = radial.get((i, j), (a_max, 1.0))
                    dec = parts.get((i, j, k), [])
                    c0, lm = dec[m] if m < len(dec) else (0.0, 0.0)
                    rows.append(f"{i} {j} {k} 1.0 1.0 {a:.12g} {lm:.15g} {g:.12g} {c0:.15g} 0.0 0.0 0.0 0.0 0.0")
        files.append("\n".join(rows) + "\n")
    return files


def read_lammps_table(path, keyword: str):
    """(x, E, F) of one section of a LAMMPS table file (units as written)."""
    lines = Path(path).read_text().splitlines()
    for k, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#") and line.split()[0] == keyword:
            head = lines[k + 1].split()
            n = int(head[head.index("N") + 1])
            rows = []
            j = k + 2
            while len(rows) < n and j < len(lines):
                s = lines[j].split()
                if s and not s[0].startswith("#"):
                    rows.append([float(v) for v in s[1:4]])
                j += 1
            a = np.array(rows)
            return a[:, 0], a[:, 1], a[:, 2]
    raise InputError(f"no section '{keyword}' in {path}")
