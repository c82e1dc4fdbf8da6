#include "pair_cgkit.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neighbor.h"
#include "update.h"

#include <torch/csrc/jit/runtime/graph_executor.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

using namespace LAMMPS_NS;

static const char *EXPORT_HINT = "write it with `cgkit model export MODEL OUT.pt --lammps`";

PairCgkit::PairCgkit(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;    // the virial comes from the model (edge sum)
  centroidstressflag = CENTROID_SAME;    // per-atom virial: half of each edge's to each end
}

PairCgkit::~PairCgkit()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairCgkit::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

// pair_style cgkit [dtype float32|float64]
void PairCgkit::settings(int narg, char **arg)
{
  required_dtype.clear();
  int iarg = 0;
  while (iarg < narg) {
    if (strcmp(arg[iarg], "dtype") == 0 && iarg + 1 < narg) {
      required_dtype = arg[iarg + 1];
      if (required_dtype != "float32" && required_dtype != "float64")
        error->all(FLERR, "pair_style cgkit: dtype must be float32 or float64, got {}",
                   required_dtype);
      iarg += 2;
    } else {
      error->all(FLERR, "pair_style cgkit: unknown argument '{}' (usage: pair_style cgkit "
                        "[dtype float32|float64])", arg[iarg]);
    }
  }
}

// pair_coeff * * MODEL.pt name_of_type_1 ... name_of_type_N
void PairCgkit::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff for cgkit needs '* * MODEL.pt' and one species name per atom "
                      "type ({} types), got {} arguments", ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for cgkit must be 'pair_coeff * * MODEL.pt names...'");
  model_file = arg[2];

  // ---- load and validate the file (every failure is a LAMMPS error, never a crash)
  std::string problem;
  try {
    model = torch::jit::load(model_file, torch::kCPU);
  } catch (const std::exception &e) {
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    error->all(FLERR, "pair_style cgkit cannot load {} as a TorchScript file ({}); {}", model_file,
               msg, EXPORT_HINT);
  }
  try {
    if (!model.hasattr("cgkit_format"))
      problem = "it is a TorchScript file but not a cgkit LAMMPS export (no cgkit_format attribute)";
    else if (model.attr("cgkit_format").toStringRef() != "cgkit-lammps-1")
      problem = "its format is '" + model.attr("cgkit_format").toStringRef() +
          "', this plugin reads cgkit-lammps-1";
    if (problem.empty()) {
      cutoff = model.attr("cutoff").toDouble();
      receptive_field = model.attr("receptive_field").toDouble();
      n_hops = model.attr("n_hops").toInt();
      type_names.clear();
      for (const auto &v : model.attr("type_names").toListRef())
        type_names.push_back(v.toStringRef());
      std::string dn = model.attr("dtype_name").toStringRef();
      if (dn == "float32")
        dtype = torch::kFloat32;
      else if (dn == "float64")
        dtype = torch::kFloat64;
      else
        problem = "unknown dtype '" + dn + "' in the file";
      if (problem.empty() && !required_dtype.empty() && required_dtype != dn)
        error->all(FLERR, "pair_style cgkit dtype {} was requested, but model {} is {}; export "
                          "a {} model or change the pair_style line", required_dtype, model_file,
                   dn, required_dtype);
    }
  } catch (const std::exception &e) {
    problem = std::string("its attributes cannot be read: ") + e.what();
    problem = problem.substr(0, problem.find('\n'));
  }
  if (!problem.empty())
    error->all(FLERR, "pair_style cgkit: {} is not usable: {}; {}", model_file, problem,
               EXPORT_HINT);
  if (!(cutoff > 0.0) || !(receptive_field >= cutoff) || n_hops < 1)
    error->all(FLERR, "pair_style cgkit: {} has cutoff {} and receptive field {} (need 0 < "
                      "cutoff <= receptive field); {}", model_file, cutoff, receptive_field,
               EXPORT_HINT);
  model.eval();
  // no graph-executor specialisation: the number of atoms and edges changes every step, and
  // re-profiling/fusing for new shapes costs more than it saves (and may change round-off)
  torch::jit::setGraphExecutorOptimize(false);
  model_loaded = true;

  // ---- LAMMPS types -> model species by name
  type_to_species.assign(ntypes + 1, -1);
  std::string known;
  for (const auto &t : type_names) known += (known.empty() ? "" : " ") + t;
  for (int t = 1; t <= ntypes; t++) {
    const std::string name = arg[2 + t];
    auto it = std::find(type_names.begin(), type_names.end(), name);
    if (it == type_names.end())
      error->all(FLERR, "pair_coeff cgkit: species '{}' of atom type {} is not in model {} "
                        "(its species: {})", name, t, model_file, known);
    type_to_species[t] = it - type_names.begin();
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairCgkit::init_style()
{
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style cgkit requires 'newton on' (forces on ghost atoms are summed "
                      "onto their owners); remove 'newton off' from the input");
  if (!model_loaded) error->all(FLERR, "pair_style cgkit: pair_coeff * * MODEL.pt ... not given");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style cgkit requires atom IDs");
  // the local atoms' energies need every atom within the receptive field: ghosts must reach
  // receptive field + skin (atoms move up to skin/2 between re-neighbourings)
  const double need = receptive_field + neighbor->skin;
  if (comm->cutghostuser < need) comm->cutghostuser = need;
  // no LAMMPS neighbour list is requested: the edges among local + ghost atoms are built in
  // compute() with a cell list (ghost-ghost edges are needed for message passing)
}

double PairCgkit::init_one(int, int)
{
  return cutoff;
}

// every ordered pair (i, j), i != j, of the nall local + ghost atoms closer than the cutoff
void PairCgkit::build_edges(int nall, double **x, std::vector<int64_t> &src,
                            std::vector<int64_t> &dst)
{
  src.clear();
  dst.clear();
  if (nall == 0) return;
  double lo[3], hi[3];
  for (int d = 0; d < 3; d++) lo[d] = hi[d] = x[0][d];
  for (int i = 1; i < nall; i++)
    for (int d = 0; d < 3; d++) {
      lo[d] = std::min(lo[d], x[i][d]);
      hi[d] = std::max(hi[d], x[i][d]);
    }
  int nb[3];
  double bs[3];
  for (int d = 0; d < 3; d++) {
    const double ext = hi[d] - lo[d];
    nb[d] = std::max(1, std::min(512, (int) std::floor(ext / cutoff)));
    bs[d] = std::max(ext / nb[d], cutoff);    // bins at least one cutoff wide
  }
  const int64_t nbins = (int64_t) nb[0] * nb[1] * nb[2];
  std::vector<int> head(nbins, -1), next(nall, -1), bin(nall);
  for (int i = 0; i < nall; i++) {
    int c[3];
    for (int d = 0; d < 3; d++) c[d] = std::min(nb[d] - 1, (int) ((x[i][d] - lo[d]) / bs[d]));
    bin[i] = (c[2] * nb[1] + c[1]) * nb[0] + c[0];
    next[i] = head[bin[i]];
    head[bin[i]] = i;
  }
  const double cutsq_ = cutoff * cutoff;
  for (int i = 0; i < nall; i++) {
    const int b = bin[i];
    const int cx = b % nb[0], cy = (b / nb[0]) % nb[1], cz = b / (nb[0] * nb[1]);
    for (int dz = -1; dz <= 1; dz++) {
      const int z = cz + dz;
      if (z < 0 || z >= nb[2]) continue;
      for (int dy = -1; dy <= 1; dy++) {
        const int y = cy + dy;
        if (y < 0 || y >= nb[1]) continue;
        for (int dx = -1; dx <= 1; dx++) {
          const int xx = cx + dx;
          if (xx < 0 || xx >= nb[0]) continue;
          for (int j = head[(z * nb[1] + y) * nb[0] + xx]; j >= 0; j = next[j]) {
            if (j == i) continue;
            const double ddx = x[j][0] - x[i][0], ddy = x[j][1] - x[i][1],
                         ddz = x[j][2] - x[i][2];
            if (ddx * ddx + ddy * ddy + ddz * ddz < cutsq_) {
              src.push_back(i);
              dst.push_back(j);
            }
          }
        }
      }
    }
  }
}

// keep atoms within n_hops edges of a local atom and edges with an end within n_hops - 1
// (breadth-first over the edge list, which build_edges groups by source atom); renumbers the
// kept atoms (local atoms keep 0..nlocal-1) and the edges in place; returns the kept count
int PairCgkit::prune(int nlocal, int nall, std::vector<int64_t> &src, std::vector<int64_t> &dst,
                     std::vector<int> &keep)
{
  const int64_t ne = (int64_t) src.size();
  std::vector<int64_t> start(nall + 1, 0);
  for (int64_t e = 0; e < ne; e++) start[src[e] + 1]++;
  for (int i = 0; i < nall; i++) start[i + 1] += start[i];
  const int far = (int) n_hops + 1;
  std::vector<int> hop(nall, far);
  std::vector<int> frontier, next_frontier;
  for (int i = 0; i < nlocal; i++) {
    hop[i] = 0;
    frontier.push_back(i);
  }
  for (int h = 1; h <= n_hops && !frontier.empty(); h++) {
    next_frontier.clear();
    for (int i : frontier)
      for (int64_t e = start[i]; e < start[i + 1]; e++) {
        const int j = (int) dst[e];
        if (hop[j] == far) {
          hop[j] = h;
          next_frontier.push_back(j);
        }
      }
    frontier.swap(next_frontier);
  }
  std::vector<int> newidx(nall, -1);
  keep.clear();
  for (int i = 0; i < nall; i++)
    if (hop[i] <= n_hops) {
      newidx[i] = (int) keep.size();
      keep.push_back(i);
    }
  int64_t m = 0;
  for (int64_t e = 0; e < ne; e++) {
    const int i = (int) src[e], j = (int) dst[e];
    if (std::min(hop[i], hop[j]) <= n_hops - 1) {
      src[m] = newidx[i];
      dst[m] = newidx[j];
      m++;
    }
  }
  src.resize(m);
  dst.resize(m);
  return (int) keep.size();
}

void PairCgkit::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;

  std::vector<int64_t> src, dst;
  std::vector<int> keep;
  build_edges(nall, x, src, dst);
  const int nmod = prune(nlocal, nall, src, dst, keep);    // atoms passed to the model
  const int64_t nedge = (int64_t) src.size();

  auto pos64 = torch::empty({nmod, 3}, torch::kFloat64);
  auto pa = pos64.accessor<double, 2>();
  auto species = torch::empty({nmod}, torch::kInt64);
  auto sa = species.accessor<int64_t, 1>();
  for (int k = 0; k < nmod; k++) {
    const int i = keep[k];
    for (int d = 0; d < 3; d++) pa[k][d] = x[i][d];
    sa[k] = type_to_species[type[i]];
  }
  auto edges = torch::empty({2, nedge}, torch::kInt64);
  if (nedge > 0) {
    std::memcpy(edges[0].data_ptr<int64_t>(), src.data(), nedge * sizeof(int64_t));
    std::memcpy(edges[1].data_ptr<int64_t>(), dst.data(), nedge * sizeof(int64_t));
  }
  const bool want_virial = vflag_global || vflag_atom;

  std::vector<torch::jit::IValue> inputs{pos64.to(dtype), species, edges, (int64_t) nlocal,
                                         want_virial, (bool) vflag_atom};
  torch::Tensor energy, eloc, forces, vir, vat;
  try {
    auto out = model.forward(inputs).toTuple();
    energy = out->elements()[0].toTensor().to(torch::kFloat64);
    eloc = out->elements()[1].toTensor().to(torch::kFloat64).contiguous();
    forces = out->elements()[2].toTensor().to(torch::kFloat64).contiguous();
    vir = out->elements()[3].toTensor().to(torch::kFloat64).contiguous();
    vat = out->elements()[4].toTensor().to(torch::kFloat64).contiguous();
  } catch (const std::exception &e) {
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    error->one(FLERR, "pair_style cgkit: model {} failed on {} atoms ({} local): {}", model_file,
               nmod, nlocal, msg);
  }
  if (forces.size(0) != nmod || eloc.size(0) != nlocal)
    error->one(FLERR, "pair_style cgkit: model {} returned arrays of the wrong shape", model_file);

  auto fa = forces.accessor<double, 2>();
  for (int k = 0; k < nmod; k++)
    for (int d = 0; d < 3; d++) f[keep[k]][d] += fa[k][d];
  if (eflag_global) eng_vdwl += energy.item<double>();
  if (eflag_atom) {
    auto ea = eloc.accessor<double, 1>();
    for (int i = 0; i < nlocal; i++) eatom[i] += ea[i];
  }
  if (vflag_global) {
    auto va = vir.accessor<double, 1>();
    for (int k = 0; k < 6; k++) virial[k] += va[k];
  }
  if (vflag_atom && vat.size(0) == nmod) {
    auto va = vat.accessor<double, 2>();
    for (int k = 0; k < nmod; k++)
      for (int c = 0; c < 6; c++) vatom[keep[k]][c] += va[k][c];
  }
}
