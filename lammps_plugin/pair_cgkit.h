/* pair_style cgkit: a cgkit model exported with `cgkit model export MODEL OUT.pt --lammps`
 * (TorchScript, run by libtorch) evaluated on LAMMPS's local + ghost atoms.
 *
 * The energy of a rank is the sum of the atomic energies of its local atoms, computed on the
 * graph of local and ghost atoms (ghosts are explicit periodic images, so no cell shifts).
 * With the ghost cutoff >= the model's receptive field (n_layers x cutoff for message
 * passing; the style raises comm's ghost cutoff to receptive field + skin) these energies are
 * exact, and the forces on ghosts, summed onto their owners by LAMMPS's reverse
 * communication (hence `newton on`), make the forces exact under any domain decomposition.
 * Only atoms within n_hops edges (message-passing layers) of a local atom, and the edges with an
 * end within n_hops - 1, are passed to the model: the others cannot reach a local energy.
 */
#ifndef LMP_PAIR_CGKIT_H
#define LMP_PAIR_CGKIT_H

#include "pair.h"

#include <torch/script.h>

#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairCgkit : public Pair {
 public:
  PairCgkit(class LAMMPS *);
  ~PairCgkit() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 protected:
  void allocate();
  void build_edges(int nall, double **x, std::vector<int64_t> &src, std::vector<int64_t> &dst);
  int prune(int nlocal, int nall, std::vector<int64_t> &src, std::vector<int64_t> &dst,
            std::vector<int> &keep);

  torch::jit::Module model;
  bool model_loaded = false;
  std::string model_file;
  std::string required_dtype;    // from `pair_style cgkit dtype X`, empty = any
  torch::Dtype dtype = torch::kFloat64;
  double cutoff = 0.0;
  double receptive_field = 0.0;
  int64_t n_hops = 0;    // message-passing layers: atoms farther than this many edges are idle
  std::vector<std::string> type_names;    // species of the model
  std::vector<int64_t> type_to_species;   // LAMMPS type (1..ntypes) -> model species index
};

}    // namespace LAMMPS_NS

#endif
