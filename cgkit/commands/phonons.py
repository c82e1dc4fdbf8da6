"""``cgkit phonons``: phonon band structure, DOS, thermal properties and the stable MD time step."""
from __future__ import annotations


def register(subparsers):
    p = subparsers.add_parser(
        "phonons", help="phonons through phonopy (analytic Hessian or finite displacements)",
        description="Harmonic phonons of a crystal. With a cgkit potential the force constants "
                    "are exact autograd second derivatives; with an ASE calculator phonopy's "
                    "finite displacements are used. Writes summary.json (frequencies in THz at "
                    "the high-symmetry points, maximum frequency, λ_max, ω_max, dt_max in fs), "
                    "band_dos.png, band.dat, dos.dat, thermal.dat, phonopy_params.yaml and "
                    "FORCE_CONSTANTS.")
    p.add_argument("--structure", required=True, help="unit cell, any ASE-readable file (periodic in 3D)")
    p.add_argument("--potential", required=True,
                   help="saved cgkit model file, a built-in (cgkit:sw, cgkit:lj:sigma=3.4,...), or an "
                        "ASE calculator with keyword arguments (ase:EMT, "
                        "ase:LennardJones:sigma=3.4,epsilon=0.0104,rc=8.5,smooth=True)")
    p.add_argument("--supercell", type=int, nargs="+", default=[3, 3, 3], metavar="N",
                   help="supercell: 3 repetitions or 9 integers (row-major 3×3 matrix); default 3 3 3")
    p.add_argument("--primitive", default="auto",
                   help="phonopy primitive matrix: 'auto' (by symmetry, default) or 'none' (the unit cell)")
    p.add_argument("--method", default="auto", choices=["auto", "analytic", "finite_displacement"],
                   help="force constants route (auto: analytic for cgkit potentials)")
    p.add_argument("--displacement", type=float, default=0.01,
                   help="finite-displacement distance, Å (default 0.01)")
    p.add_argument("--mesh", type=int, nargs=3, default=[20, 20, 20], metavar="N",
                   help="q-point mesh for DOS and thermal properties (default 20 20 20)")
    p.add_argument("--tmax", type=float, default=1000.0, help="highest temperature, K (default 1000)")
    p.add_argument("--tstep", type=float, default=10.0, help="temperature step, K (default 10)")
    p.add_argument("--no-symmetrize", action="store_true",
                   help="do not impose the acoustic sum rule (its size is reported either way)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    import warnings
    from pathlib import Path

    import numpy as np

    from cgkit.errors import InputError
    from cgkit.properties.calculators import load_model
    from cgkit.properties.phonons import Phonons

    sc = args.supercell
    if len(sc) == 3:
        matrix = sc
    elif len(sc) == 9:
        matrix = np.asarray(sc).reshape(3, 3)
    else:
        raise InputError(f"--supercell takes 3 or 9 integers, got {len(sc)}")
    prim = None if args.primitive.lower() in ("none", "p", "unit") else args.primitive
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ph = Phonons(args.structure, load_model(args.potential), supercell=matrix,
                     primitive_matrix=prim, method=args.method, displacement=args.displacement,
                     mesh=args.mesh, temperatures=(0.0, args.tmax, args.tstep),
                     symmetrize=not args.no_symmetrize).run()
    summary = ph.summary()
    summary["potential"] = args.potential
    summary["structure"] = str(args.structure)
    summary["warnings"] = [str(w.message) for w in caught
                           if w.category.__name__ in ("ImaginaryModeWarning",)]
    for msg in summary["warnings"]:
        print(f"warning: {msg}")
    from cgkit.properties.calculators import Results
    Results(summary).to_json(out / "summary.json")
    ph.plot(out / "band_dos.png")
    ph.write_data(out)
    ph.write_phonopy(out)
    r = ph.results
    ts = r["timestep"]
    print(f"max frequency {r['max_frequency']:.4f} THz; supercell Γ: λ_max {ts['lambda_max']:.5g} "
          f"eV/Å²/amu, ω_max {ts['omega_max']:.5g} rad/fs, dt_max {ts['dt_max']:.3f} fs "
          f"(recommended {ts['dt_recommended']:.3f} fs)")
    print(f"wrote {out}/summary.json, band_dos.png, band.dat, dos.dat, thermal.dat, "
          "phonopy_params.yaml, FORCE_CONSTANTS")
    return 0
