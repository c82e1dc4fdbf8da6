"""Write train.xyz and test.xyz: ethanol (C2H5OH, 9 atoms) labelled by a QM method.

    python examples/molecule_qm/make_data.py                   # GFN2-xTB (pip install tblite)
    python examples/molecule_qm/make_data.py --calculator emt  # ASE EMT: seconds, crude, for a try
    python examples/molecule_qm/make_data.py --frames 950 --test-frames 500   # issue-17 sizes

Frames: Langevin MD at 500 K (time step 0.5 fs), one frame every 10 steps after 100 steps of
equilibration; the test frames come from a second, independent trajectory (another seed), so
they are not correlated with the training frames. Labels: energy (eV) and forces (eV/Å).
Molecules are not periodic: no stress.
"""
import argparse
from pathlib import Path

from ase.build import molecule

from cgkit.sampling import sample_configurations, write_extxyz


def calculator(name: str):
    if name == "emt":
        from ase.calculators.emt import EMT
        return EMT()
    try:
        from tblite.ase import TBLite
    except ImportError:
        raise SystemExit("GFN2-xTB labels need the tblite package (pip install tblite); "
                         "or run with --calculator emt for a quick try") from None
    return TBLite(method="GFN2-xTB", verbosity=0)


def main(argv=None) -> list[Path]:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calculator", choices=["gfn2", "emt"], default="gfn2")
    p.add_argument("--frames", type=int, default=100, help="training + validation frames")
    p.add_argument("--test-frames", type=int, default=50)
    p.add_argument("--temperature", type=float, default=500.0, help="K")
    p.add_argument("--out", default=str(here), help="folder for train.xyz and test.xyz")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calc = calculator(args.calculator)
    paths = []
    for name, n, seed in (("train.xyz", args.frames, 0), ("test.xyz", args.test_frames, 1)):
        frames = sample_configurations([molecule("CH3CH2OH")], calc, temperatures=(args.temperature,),
                                       frames_per_temperature=n, md_steps_between=10,
                                       equilibration_steps=100, timestep_fs=0.5, seed=seed,
                                       progress=False)
        write_extxyz(frames, out / name)
        print(f"wrote {out / name}: {len(frames)} frames ({args.calculator})")
        paths.append(out / name)
    return paths


if __name__ == "__main__":
    main()
