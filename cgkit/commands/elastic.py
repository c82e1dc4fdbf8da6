"""``cgkit elastic``: the 6×6 elastic tensor (GPa), clamped- and relaxed-ion, and moduli."""
from __future__ import annotations


def register(subparsers):
    p = subparsers.add_parser(
        "elastic", help="elastic constants from stress–strain (and analytic Hessians)",
        description="Full 6×6 Voigt elastic tensor in GPa, clamped-ion and relaxed-ion, from "
                    "stress–strain fits (any ASE calculator with stress) and, for cgkit "
                    "potentials, analytically (Born term minus internal relaxation). Writes "
                    "summary.json (tensors, moduli Voigt/Reuss/Hill, Born stability, "
                    "symmetry-averaged constants) and stress_strain.png.")
    p.add_argument("--structure", required=True, help="crystal, any ASE-readable file (periodic in 3D)")
    p.add_argument("--potential", required=True,
                   help="saved cgkit model file, cgkit:<builtin>[:k=v,...], or ase:<Calculator>[:k=v,...] "
                        "(e.g. ase:EMT)")
    p.add_argument("--strains", type=float, nargs="+", default=[-0.01, -0.005, 0.005, 0.01],
                   help="engineering strains applied to each component (default -0.01 -0.005 0.005 0.01)")
    p.add_argument("--method", default="auto", choices=["auto", "analytic", "finite_strain"],
                   help="auto: both routes for cgkit potentials, finite strain otherwise")
    p.add_argument("--relax", action="store_true",
                   help="relax cell and atoms before the calculation (to --cell-fmax)")
    p.add_argument("--clamped-only", action="store_true",
                   help="skip the relaxed-ion finite-strain calculation")
    p.add_argument("--fmax", type=float, default=1e-5,
                   help="force tolerance of internal relaxations, eV/Å (default 1e-5)")
    p.add_argument("--cell-fmax", type=float, default=1e-4,
                   help="tolerance of the --relax cell relaxation, eV/Å (default 1e-4)")
    p.add_argument("--max-steps", type=int, default=500, help="optimizer steps per relaxation (default 500)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from cgkit.properties.calculators import Results, load_model
    from cgkit.properties.elastic import ElasticConstants

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    el = ElasticConstants(args.structure, load_model(args.potential), strains=args.strains,
                          method=args.method, relax_ions=not args.clamped_only,
                          relax_cell=args.relax, fmax=args.fmax, cell_fmax=args.cell_fmax,
                          max_steps=args.max_steps).run()
    summary = el.summary()
    summary["potential"] = args.potential
    summary["structure"] = str(args.structure)
    Results(summary).to_json(out / "summary.json")
    if "finite_strain" in el.results:
        el.plot(out / "stress_strain.png")
    with np.printoptions(precision=2, suppress=True, linewidth=120):
        print("clamped-ion C (GPa):\n", np.asarray(el.results["C_clamped"]))
        if el.results["C_relaxed"] is not None:
            print("relaxed-ion C (GPa):\n", np.asarray(el.results["C_relaxed"]))
    hill = el.results["moduli"].get("relaxed", el.results["moduli"]["clamped"])["hill"]
    print(f"Hill: K {hill['bulk']:.2f} GPa, G {hill['shear']:.2f} GPa, E {hill['young']:.2f} GPa, "
          f"ν {hill['poisson']:.4f}; Born-stable: {el.results['stability']['stable']}")
    print(f"wrote {out}/summary.json" + (", stress_strain.png" if "finite_strain" in el.results else ""))
    return 0
