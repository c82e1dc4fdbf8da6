// Entry point of cgkitplugin.so: registers pair style `cgkit` with LAMMPS (`plugin load`).
#include "cgkit_plugin_api.h"
#include "pair_cgkit.h"

#ifndef CGKIT_LAMMPS_VERSION
#define CGKIT_LAMMPS_VERSION "22 Jul 2025"
#endif

static void *create_pair_cgkit(void *lmp)
{
  return (void *) new LAMMPS_NS::PairCgkit((LAMMPS_NS::LAMMPS *) lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  cgkit_plugin_record rec;
  rec.version = CGKIT_LAMMPS_VERSION;
  rec.style = "pair";
  rec.name = "cgkit";
  rec.info = "cgkit pair style: exported cgkit ENNP / neural CG models (TorchScript, libtorch)";
  rec.author = "cgkit developers";
  rec.creator.v1 = &create_pair_cgkit;
  rec.handle = handle;
  ((cgkit_plugin_register_fn) regfunc)(&rec, lmp);
}
