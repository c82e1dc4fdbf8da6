"""``cgkit elastic``: the 6×6 elastic tensor (GPa), clamped- and relaxed-ion, and moduli."""
from __future__ import annotations

from cgkit.options import add_output_options, add_potential_option


def register(subparsers):
    from cgkit.properties.elastic import RESIDUAL_STRESS_WARNING_GPA
    p = subparsers.add_parser(
        "elastic", help="elastic constants from stress–strain (and analytic Hessians)",
        description="Full 6×6 Voigt elastic tensor in GPa, clamped-ion and relaxed-ion, from "
                    "stress–strain fits (any ASE calculator with stress) and, for cgkit "
                    "potentials, analytically (Born term minus internal relaxation). Named "
                    "constants (C11, C12, C44, ...), moduli (Voigt/Reuss/Hill) and the Born "
                    "stability criteria are given in the standard (conventional) setting of the "
                    "detected space group; the raw tensors in the frame of the input structure "
                    "are given beside them, labelled. Without --relax, a residual stress above "
                    f"{RESIDUAL_STRESS_WARNING_GPA:g} GPa (max |σ_ij|) is warned about. Writes "
                    "summary.json and stress_strain.png. Example: cgkit elastic --structure Cu.cif "
                    "--potential ase:EMT --relax --out el/")
    p.add_argument("--structure", required=True, help="crystal, any ASE-readable file (periodic in 3D)")
    add_potential_option(p)
    p.add_argument("--strains", type=float, nargs="+", default=[-0.01, -0.005, 0.005, 0.01],
                   help="engineering strains applied to each component")
    p.add_argument("--method", default="auto", choices=["auto", "analytic", "finite_strain"],
                   help="auto: both routes for cgkit potentials, finite strain otherwise")
    p.add_argument("--relax", action="store_true",
                   help="relax cell and atoms before the calculation (to --cell-fmax)")
    p.add_argument("--clamped-only", action="store_true",
                   help="skip the relaxed-ion finite-strain calculation")
    p.add_argument("--fmax", type=float, default=1e-5,
                   help="force tolerance of internal relaxations, eV/Å")
    p.add_argument("--cell-fmax", type=float, default=1e-4,
                   help="tolerance of the --relax cell relaxation, eV/Å")
    p.add_argument("--max-steps", type=int, default=500, help="optimizer steps per relaxation")
    p.add_argument("--stress-warning", type=float, default=RESIDUAL_STRESS_WARNING_GPA,
                   help="GPa: warn (without --relax) when the structure's max |σ_ij| exceeds this")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import warnings

    import numpy as np

    from cgkit.outputs import OutputFolder
    from cgkit.io_potential import load_model
    from cgkit.results import Results
    from cgkit.properties.elastic import ElasticConstants

    model = load_model(args.potential)
    el = ElasticConstants(args.structure, model, strains=args.strains,
                          method=args.method, relax_ions=not args.clamped_only,
                          relax_cell=args.relax, fmax=args.fmax, cell_fmax=args.cell_fmax,
                          max_steps=args.max_steps, stress_warning=args.stress_warning)
    with OutputFolder(args.out, overwrite=args.overwrite, command="elastic") as out:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recorded in results["warnings"], printed below
            el.run()
        summary = el.summary()
        summary["potential"] = args.potential
        summary["structure"] = str(args.structure)
        Results(summary).to_json(out / "summary.json")
        figures = [p.name for p in el.plot(out)]
    r = el.results
    sym = r["symmetry"]
    kind = "relaxed" if r["C_relaxed"] is not None else "clamped"
    with np.printoptions(precision=2, suppress=True, linewidth=120):
        print("input frame (Cartesian axes of the structure as read):")
        print(" clamped-ion C (GPa):\n", np.asarray(r["C_clamped"]))
        if r["C_relaxed"] is not None:
            print(" relaxed-ion C (GPa):\n", np.asarray(r["C_relaxed"]))
        print(f"standard setting of {sym['spacegroup'] or 'P1'} ({sym['crystal_system']}), "
              f"{kind}-ion, symmetry-averaged C (GPa):\n", np.asarray(sym[f"C_{kind}_symmetrized"]))
    named = ", ".join(f"{k} {v:.2f}" for k, v in sym[f"named_{kind}"].items())
    print(f"standard setting, {kind}-ion: {named} GPa")
    hill = r["moduli"][kind]["hill"]
    print(f"Hill: K {hill['bulk']:.2f} GPa, G {hill['shear']:.2f} GPa, E {hill['young']:.2f} GPa, "
          f"ν {hill['poisson']:.4f}; Born-stable: {r['stability']['stable']}")
    for msg in r["warnings"]:
        print(f"warning: {msg}")
    print(f"wrote {args.out}/summary.json" + "".join(f", {f}" for f in figures))
    return 0
