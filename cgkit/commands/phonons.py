"""``cgkit phonons``: phonon band structure, DOS, thermal properties and the stable MD time step."""
from __future__ import annotations

from cgkit.options import add_output_options, add_potential_option


def register(subparsers):
    p = subparsers.add_parser(
        "phonons", help="phonons through phonopy (analytic Hessian or finite displacements)",
        description="Harmonic phonons of a crystal. With a cgkit potential the force constants "
                    "are exact autograd second derivatives; with an ASE calculator phonopy's "
                    "finite displacements are used. Writes summary.json (frequencies in THz at "
                    "the high-symmetry points, maximum frequency, λ_max, ω_max, dt_max in fs), "
                    "band_dos.png, band.dat, dos.dat, thermal.dat, phonopy_params.yaml and "
                    "FORCE_CONSTANTS. A supercell whose perpendicular widths are not all at least "
                    "twice the potential's interaction reach (cutoff; n_layers × cutoff for a "
                    "message-passing ENNP) is refused with the smallest diagonal supercell that "
                    "fits. Polar crystals: --nac applies phonopy's non-analytic correction with "
                    "the potential's Born effective charges and --epsilon-inf (LO–TO splitting; "
                    "required for potentials with long-range Coulomb terms, whose supercell then "
                    "only needs twice their short-range cutoff). Example: cgkit phonons "
                    "--structure Si.cif --potential cgkit:sw --supercell 3 3 3 --out ph/; "
                    "cgkit phonons --structure NaCl.cif --potential cgkit:nacl-bmh --nac "
                    "--supercell 3 3 3 --out ph-nacl/")
    p.add_argument("--structure", required=True, help="unit cell, any ASE-readable file (periodic in 3D)")
    add_potential_option(p)
    p.add_argument("--supercell", type=int, nargs="+", default=[3, 3, 3], metavar="N",
                   help="supercell: 3 repetitions or 9 integers (row-major 3×3 matrix)")
    p.add_argument("--allow-small-supercell", action="store_true",
                   help="compute even when the supercell is narrower than twice the interaction "
                        "reach (results are then wrong away from the supercell's commensurate "
                        "q-points); recorded in summary.json and printed as a warning")
    p.add_argument("--nac", action="store_true",
                   help="non-analytic correction for polar crystals (LO–TO splitting): Born "
                        "effective charges from the potential, ε∞ from --epsilon-inf")
    p.add_argument("--epsilon-inf", type=float, nargs="+", default=None, metavar="EPS",
                   help="high-frequency dielectric constant for --nac: 1 number (isotropic), 3 "
                        "(diagonal) or 9 (3×3 row-major); default 1, exact for fixed point "
                        "charges (rigid-ion models)")
    p.add_argument("--primitive", default="auto",
                   help="phonopy primitive matrix: 'auto' (by symmetry, default) or 'none' (the unit cell)")
    p.add_argument("--method", default="auto", choices=["auto", "analytic", "finite_displacement"],
                   help="force constants route (auto: analytic for cgkit potentials)")
    p.add_argument("--displacement", type=float, default=0.01,
                   help="finite-displacement distance, Å")
    p.add_argument("--mesh", type=int, nargs=3, default=[20, 20, 20], metavar="N",
                   help="q-point mesh for DOS and thermal properties")
    p.add_argument("--tmax", type=float, default=1000.0, help="highest temperature, K")
    p.add_argument("--tstep", type=float, default=10.0, help="temperature step, K")
    p.add_argument("--no-symmetrize", action="store_true",
                   help="do not impose the acoustic sum rule (its size is reported either way)")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import warnings

    import numpy as np

    from cgkit.errors import InputError
    from cgkit.outputs import OutputFolder
    from cgkit.io_potential import load_model
    from cgkit.results import Results
    from cgkit.properties.phonons import Phonons

    sc = args.supercell
    if len(sc) == 3:
        matrix = sc
    elif len(sc) == 9:
        matrix = np.asarray(sc).reshape(3, 3)
    else:
        raise InputError(f"--supercell takes 3 or 9 integers, got {len(sc)}")
    if args.tstep <= 0 or args.tmax < 0:
        raise InputError(f"need --tmax ≥ 0 K and --tstep > 0 K, got {args.tmax} and {args.tstep}")
    if min(args.mesh) < 1:
        raise InputError(f"--mesh takes three positive integers, got {args.mesh}")
    prim = None if args.primitive.lower() in ("none", "p", "unit") else args.primitive
    ph = Phonons(args.structure, load_model(args.potential), supercell=matrix,
                 primitive_matrix=prim, method=args.method, displacement=args.displacement,
                 mesh=args.mesh, temperatures=(0.0, args.tmax, args.tstep),
                 symmetrize=not args.no_symmetrize,
                 allow_small_supercell=args.allow_small_supercell, nac=args.nac,
                 epsilon_inf=args.epsilon_inf)
    ph.check_supercell()  # refuse a too-small supercell before any output or computation
    with OutputFolder(args.out, overwrite=args.overwrite, command="phonons") as out:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recorded in results["warnings"], printed below
            ph.run()
        summary = ph.summary()
        summary["potential"] = args.potential
        summary["structure"] = str(args.structure)
        Results(summary).to_json(out / "summary.json")
        ph.plot(out)
        ph.write_data(out)
        ph.write_phonopy(out)
    for msg in ph.results["warnings"]:
        print(f"warning: {msg}")
    r = ph.results
    if "lo_to" in r:
        print(f"non-analytic correction: largest LO–TO splitting at Γ {r['lo_to']['max_splitting']:.4f} THz")
    ts = r["timestep"]
    print(f"max frequency {r['max_frequency']:.4f} THz; supercell Γ: λ_max {ts['lambda_max']:.5g} "
          f"eV/Å²/amu, ω_max {ts['omega_max']:.5g} rad/fs, dt_max {ts['dt_max']:.3f} fs "
          f"(recommended {ts['dt_recommended']:.3f} fs)")
    print(f"wrote {args.out}/summary.json, band_dos.png, band.dat, dos.dat, thermal.dat, "
          "phonopy_params.yaml, FORCE_CONSTANTS")
    return 0
