"""Long-range electrostatics (Ewald, particle-mesh Ewald, direct sum, damped shifted force).

Units: charges in e, lengths in Å, energies in eV (k_e = 14.399645 eV·Å/e²).
"""
