"""Write cu_emt.xyz: 40 copper configurations (8 atoms each) labelled by ASE's EMT potential.

    python examples/make_cu_data.py            # writes examples/cu_emt.xyz (about 5 s)
    python examples/make_cu_data.py OUT.xyz    # or another file

Frames: Langevin MD at 300 K and 900 K (17 each), 4 rattled (0.05 Å) and 2 strained (±2 %)
cells of a 2×1×1 cubic fcc cell (a = 3.61 Å), with energies (eV), forces (eV/Å) and stresses.
"""
import sys
from pathlib import Path

from ase.build import bulk
from ase.calculators.emt import EMT

from cgkit.sampling import sample_configurations, write_extxyz


def main(path) -> Path:
    cu = bulk("Cu", "fcc", 3.61, cubic=True) * (2, 1, 1)
    frames = sample_configurations([cu], EMT(), temperatures=(300, 900), frames_per_temperature=17,
                                   md_steps_between=5, equilibration_steps=20, rattle=0.05,
                                   n_rattled=4, strains=(0.02, -0.02), seed=0, progress=False)
    write_extxyz(frames, path)
    print(f"wrote {path}: {len(frames)} frames")
    return Path(path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("cu_emt.xyz"))
