"""United-atom polyethylene (and n-alkane) systems for the TraPPE-UA force field — one import
path for the pieces, each of which lives in the module of its job:

==========================================  =================================================
:mod:`cgkit.potentials.pe_melt`             :func:`build_pe_melt` (amorphous melts),
                                            :data:`AMU_PER_A3_TO_G_CM3`
:mod:`cgkit.potentials.pe_crystal`          :func:`pe_crystal_unit_cell`,
                                            :func:`build_pe_crystal`, :data:`PE_CELL_ROOM_T`,
                                            :data:`PE_SETTING_ANGLE`
:mod:`cgkit.potentials.pe_topology`         :func:`chain_topology`,
                                            :func:`crystal_chain_topology`,
                                            :func:`unwrap_chains`
:mod:`cgkit.potentials.pe_io`               :func:`write_lammps_data`, :func:`write_psf_pdb`
:mod:`cgkit.potentials.trappe`              :class:`PECrystalTraPPEUA`,
                                            :func:`pe_crystal_potential` (the potential)
==========================================  =================================================

Per-site arrays of the structures (element ``C``, masses 15.035 / 14.027 amu):
``bead_types`` (``'CH3'`` / ``'CH2'``), ``chain_id`` (chain index) and, for melts,
``chain_index`` (position along the chain).
"""
from __future__ import annotations

from .pe_crystal import PE_CELL_ROOM_T, PE_SETTING_ANGLE, build_pe_crystal, pe_crystal_unit_cell
from .pe_io import write_lammps_data, write_psf_pdb
from .pe_melt import AMU_PER_A3_TO_G_CM3, build_pe_melt
from .pe_topology import chain_topology, crystal_chain_topology, unwrap_chains
from .trappe import PECrystalTraPPEUA, pe_crystal_potential

__all__ = ["build_pe_melt", "chain_topology", "unwrap_chains", "write_lammps_data",
           "write_psf_pdb", "AMU_PER_A3_TO_G_CM3", "PE_CELL_ROOM_T", "PE_SETTING_ANGLE",
           "pe_crystal_unit_cell", "build_pe_crystal", "crystal_chain_topology",
           "PECrystalTraPPEUA", "pe_crystal_potential"]
