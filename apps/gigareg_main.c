/* gigareg: elastix-compatible registration front end over the GigaReg core. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "gigareg/gigareg.h"
#include "gigareg/elastix_io.h"
#include "gigareg/param_map.h"
#include "cli_args.h"
#include "cli_stages.h"
#include "outputs.h"
#include "plan_cli.h"
#include "qa.h"
#include "qa_png.h"
#include "slab_run.h"
#include "slicer.h"

typedef struct run_state {
  gr_cli_args args;
  gr_image *fixed, *moving, *fmask, *mmask;
  gr_stage_config stages[GR_CLI_MAX_PARAM_FILES];
  gr_output_config outcfg[GR_CLI_MAX_PARAM_FILES];
  gr_stage_result results[GR_CLI_MAX_PARAM_FILES];
  gr_affine initial;
  int have_initial;
  gr_backend *be;
  gr_comm *comm;
  gr_outdir out;
  int out_open;
  FILE *log;
  gr_slicer_progress slicer;      /* Slicer-format progress (--outputVolume / --outputTransform runs) */
  gr_qa_history history;          /* per-iteration losses for -qa's plots */
  char volume_tmp[4400], transform_tmp[4400]; /* --outputVolume / --outputTransform until the run succeeded */
  const char *comm_inner_name;    /* -comm-stats: the communicator being counted */
} run_state;

static const char *stage_name(gr_stage_kind k) {
  switch (k) {
    case GR_STAGE_TRANSLATION: return "translation";
    case GR_STAGE_RIGID: return "rigid";
    case GR_STAGE_AFFINE: return "affine";
    case GR_STAGE_GREEDY: return "greedy";
    case GR_STAGE_SYN: return "syn";
  }
  return "?";
}

/* Progress on stderr: at most a few lines per level, with ETA. */
static void print_progress(const gr_progress_info *p) {
  const int every = p->niterations >= 20 ? p->niterations / 10 : 1;
  if (p->iteration % every != 0 && p->iteration + 1 != p->niterations) return;
  fprintf(stderr, "gigareg: stage %d/%d level %d/%d iteration %d/%d metric %.6g elapsed %.1fs ETA %s%.0fs\n",
          p->stage + 1, p->nstages, p->level + 1, p->nlevels, p->iteration + 1, p->niterations, p->metric,
          p->elapsed_s, p->eta_s < 0 ? "~" : "", p->eta_s < 0 ? 0.0 : p->eta_s);
}

/* Every iteration arrives here: -qa keeps the losses, then one of the two
 * progress formats prints (Slicer reads stdout; anything on stderr would mark
 * its run "completed with errors"). */
static void on_progress(void *user, const gr_progress_info *p) {
  run_state *st = user;
  if (st->args.qa) (void)gr_qa_history_push(&st->history, p->stage, p->level, p->iteration, p->metric);
  if (st->args.quiet) return;
  if (st->args.slicer_progress) gr_slicer_report(&st->slicer, p, stage_name(st->stages[p->stage].kind));
  else print_progress(p);
}

static gr_status load_params(run_state *st) {
  FILE *warn = st->args.quiet ? NULL : st->args.slicer_progress ? stdout : stderr;
  for (int k = 0; k < st->args.nparams; ++k) {
    gr_status s = gr_cli_load_stage(&st->args, k, warn, &st->stages[k], &st->outcfg[k]);
    if (s != GR_OK) return s;
  }
  return GR_OK;
}

/* Refuse what cannot be written before spending time on the registration. */
static gr_status check_requests(const run_state *st) {
  const gr_cli_args *a = &st->args;
  if (a->qa && !gr_png_available())
    return gr_error(GR_ERR_UNSUPPORTED, "-qa needs libpng, but this gigareg was built without it (install libpng-dev and rebuild)");
  if (a->output_volume && gr_format_from_path(a->output_volume) == GR_FORMAT_UNKNOWN)
    return gr_error(GR_ERR_UNSUPPORTED, "--outputVolume '%s': unknown image format (.nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr)",
                    a->output_volume);
  if (!a->output_transform) return GR_OK;
  int deformable = 0;
  for (int k = 0; k < a->nparams; ++k) deformable |= st->stages[k].kind == GR_STAGE_GREEDY || st->stages[k].kind == GR_STAGE_SYN;
  if (gr_is_itk_transform_path(a->output_transform)) {
    if (deformable)
      return gr_error(GR_ERR_UNSUPPORTED, "--outputTransform '%s': a deformable result needs a displacement-field file "
                      "(.nii.gz, .nrrd, .mha), not an ITK text transform", a->output_transform);
  } else if (gr_format_from_path(a->output_transform) == GR_FORMAT_UNKNOWN) {
    return gr_error(GR_ERR_UNSUPPORTED, "--outputTransform '%s': write a displacement field (.nii.gz, .nrrd, .mha) or, "
                    "for linear stages, an ITK .tfm", a->output_transform);
  }
  return GR_OK;
}

static gr_status load_image(const char *path, const char *what, gr_image **out) {
  gr_status s = gr_image_read(path, out);
  if (s != GR_OK) return s;
  if ((*out)->ncomp != 1) return gr_error(GR_ERR_UNSUPPORTED, "%s '%s' has %d components; a scalar image is required", what, path, (*out)->ncomp);
  return gr_image_check_finite(*out, what);
}

static gr_status load_inputs(run_state *st) {
  gr_status s = load_image(st->args.fixed, "fixed image", &st->fixed);
  if (s == GR_OK) s = load_image(st->args.moving, "moving image", &st->moving);
  if (s == GR_OK && st->args.fixed_mask) s = load_image(st->args.fixed_mask, "fixed mask", &st->fmask);
  if (s == GR_OK && st->args.moving_mask) s = load_image(st->args.moving_mask, "moving mask", &st->mmask);
  /* B-spline grid spacing becomes field smoothing once the fixed spacing is known. */
  for (int k = 0; s == GR_OK && k < st->args.nparams; ++k)
    gr_stage_config_resolve_grid_spacing(&st->stages[k], &st->fixed->geom);
  if (s == GR_OK && st->args.t0) {
    s = gr_transform_parameters_read_affine(st->args.t0, &st->initial);
    st->have_initial = (s == GR_OK);
  }
  return s;
}

static gr_status make_backend(run_state *st) {
  gr_device_kind kind = GR_DEVICE_AUTO;
  int index = 0;
  if (st->args.device) {
    gr_status s = gr_device_parse(st->args.device, &kind, &index);
    if (s != GR_OK) return s;
  }
  /* Under mpirun, one rank per GPU: "cuda" or "auto" without an index takes
   * the local rank's GPU (local rank modulo the device count). */
  const int ranks = st->comm ? gr_comm_size(st->comm) : 1;
  if (ranks > 1 && kind != GR_DEVICE_CPU && !(st->args.device && strchr(st->args.device, ':'))) {
    const int dev = gr_comm_local_device();
    if (dev >= 0) index = dev;
  }
  gr_status s = gr_backend_create(kind, index, st->args.threads, &st->be);
  if (s == GR_OK && !st->comm) s = gr_comm_local_create(&st->comm); /* mpirun: main made the MPI one */
  /* -comm: under mpirun the MPI communicator carries everything, or NCCL moves
   * the device buffers between GPUs (auto: when the backend is CUDA and NCCL loads). */
  const char *cm = st->args.comm ? st->args.comm : "auto";
  if (s == GR_OK && ranks > 1 && strcmp(cm, "mpi") != 0) {
    const int cuda = !strcmp(st->be->ops->name, "cuda");
    if (!strcmp(cm, "nccl") && !cuda) {
      s = gr_error(GR_ERR_INVALID_ARG, "-comm nccl needs the CUDA backend (-device cuda)");
    } else if (cuda) {
      /* auto: NCCL only when every rank can load it (the bootstrap is collective) */
      double missing = !strcmp(cm, "nccl") || gr_comm_nccl_available() ? 0.0 : 1.0;
      if (strcmp(cm, "nccl") != 0) s = st->comm->ops->allreduce_max_f64(st->comm, &missing, 1);
      gr_comm *nc = NULL;
      if (s == GR_OK && missing == 0.0) s = gr_comm_nccl_create(st->comm, index, &nc);
      if (s == GR_OK && nc) st->comm = nc; /* owns the MPI communicator now */
    }
  } else if (s == GR_OK && ranks <= 1 && st->args.comm && strcmp(st->args.comm, "auto") != 0 && !st->args.quiet) {
    fprintf(stderr, "gigareg: note: -comm %s has no effect without mpirun (one process)\n", st->args.comm);
  }
  if (s == GR_OK && st->args.comm_stats) {
    gr_comm *sc = NULL;
    st->comm_inner_name = st->comm->ops->name;
    s = gr_comm_stats_create(st->comm, 1, &sc);
    if (s == GR_OK) st->comm = sc; /* owns the communicator it counts */
  }
  return s;
}

/* -comm-stats: one line per rank on stderr (rank 0's also in elastix.log). */
static void report_comm_stats(run_state *st) {
  gr_comm_stats cs;
  if (!st->comm || !gr_comm_stats_get(st->comm, &cs)) return;
  char line[512];
  snprintf(line, sizeof line,
           "rank %d of %d (%s): point-to-point %.1f MB in %lld messages, %.3f s inside exchanges; "
           "collectives %.1f kB in %lld calls, %.3f s; run %.3f s",
           gr_comm_rank(st->comm), gr_comm_size(st->comm), st->comm_inner_name, (double)cs.p2p_bytes / 1e6,
           (long long)cs.p2p_msgs, cs.p2p_seconds, (double)cs.coll_bytes / 1e3, (long long)cs.coll_calls,
           cs.coll_seconds, cs.elapsed_seconds);
  fprintf(stderr, "gigareg: communication: %s\n", line);
  if (st->log) fprintf(st->log, "communication: %s\n", line);
}

/* The end of a run, both modes, every rank: -comm-stats, then (rank 0) the
 * peak memory into elastix.log, which is closed (a failed close fails the run). */
static gr_status finish_run_log(run_state *st, gr_status s, const char *logpath) {
  if (s == GR_OK && st->args.comm_stats) report_comm_stats(st);
  if (st->log) {
    if (s == GR_OK) fprintf(st->log, "peak backend memory: %zu bytes\n", st->be->bytes_peak);
    if (fclose(st->log) != 0 && s == GR_OK) s = gr_error(GR_ERR_IO, "cannot write '%s'", logpath);
    st->log = NULL;
  }
  return s;
}

/* The moving image resampled onto the fixed grid through -t0 and stages 0..upto-1. */
static gr_status resample_moving(run_state *st, int upto, gr_interp interp, double default_pixel, gr_image **out) {
  gr_backend *be = st->be;
  gr_affine A;
  *out = NULL;
  gr_status s = gr_chain_affine(st->have_initial ? &st->initial : NULL, st->results, st->args.nparams, upto, &A);
  if (s != GR_OK) return s;
  const gr_image *field = NULL;
  for (int j = 0; j < upto; ++j)
    if (st->results[j].field) field = st->results[j].field;
  gr_grid fg, mg;
  gr_grid_from_geometry(&st->fixed->geom, &fg);
  gr_grid_from_geometry(&st->moving->geom, &mg);
  const int64_t nf = gr_image_nvox(st->fixed), nm = gr_image_nvox(st->moving);
  float *dm = be->ops->alloc(be, (size_t)nm * 4), *dout = be->ops->alloc(be, (size_t)nf * 4), *dd = NULL;
  gr_image *res = NULL;
  s = (dm && dout) ? be->ops->upload(be, dm, st->moving->data, (size_t)nm * 4) : GR_ERR_NOMEM;
  if (s == GR_OK && field) {
    dd = be->ops->alloc(be, (size_t)nf * 12);
    s = dd ? be->ops->upload(be, dd, field->data, (size_t)nf * 12) : GR_ERR_NOMEM;
  }
  if (s == GR_OK) s = be->ops->fill(be, dout, 0.0f, nf);
  if (s == GR_OK)
    s = be->ops->resample(be, &fg, dout, &mg, dm, 1, &A, dd, interp, GR_BOUNDARY_CLAMP);
  if (s == GR_OK) s = gr_image_create(&st->fixed->geom, 1, &res);
  if (s == GR_OK) s = be->ops->download(be, res->data, dout, (size_t)nf * 4);
  /* outside the moving image: DefaultPixelValue, as elastix's resampler */
  if (s == GR_OK) gr_cli_default_pixel(&st->fixed->geom, &st->moving->geom, 0, &A, field, default_pixel, res);
  if (dm) be->ops->free(be, dm);
  if (dout) be->ops->free(be, dout);
  if (dd) be->ops->free(be, dd);
  if (s == GR_OK) *out = res;
  else gr_image_destroy(res);
  return s;
}

/* Resample the moving image through the chain up to stage k (inclusive). */
static gr_status write_result_image(run_state *st, int k, const char *path) {
  gr_image *res = NULL;
  const gr_interp interp = st->outcfg[k].final_bspline_order == 0 ? GR_INTERP_NEAREST : GR_INTERP_LINEAR;
  gr_status s = resample_moving(st, k + 1, interp, st->outcfg[k].default_pixel_value, &res);
  if (s == GR_OK) {
    res->src_type = st->moving->src_type;
    s = gr_image_write(path, res, st->outcfg[k].result_pixel_type);
  }
  gr_image_destroy(res);
  return s;
}

/* deformationField.k.mha (fixed -> moving, whole chain) and
 * inverseDeformationField.k.mha (moving grid, moving -> fixed). */
static gr_status write_fields(run_state *st, int k, const char **fp, char *fieldpath, size_t n) {
  char name[128], staged[4400];
  gr_affine A;
  gr_status s = gr_chain_affine(st->have_initial ? &st->initial : NULL, st->results, st->args.nparams, k + 1, &A);
  gr_image *fwd = NULL, *inv = NULL;
  if (s == GR_OK)
    s = gr_export_fields(st->be, &A, st->results[k].field, st->results[k].inverse_field, &st->fixed->geom,
                         &st->moving->geom, &fwd, &inv);
  snprintf(name, sizeof name, "deformationField.%d.mha", k);
  if (s == GR_OK) s = gr_image_write(gr_outdir_stage(&st->out, name, staged, sizeof staged), fwd, GR_PIXEL_F32);
  *fp = gr_outdir_final(&st->out, name, fieldpath, n);
  snprintf(name, sizeof name, "inverseDeformationField.%d.mha", k);
  if (s == GR_OK) s = gr_image_write(gr_outdir_stage(&st->out, name, staged, sizeof staged), inv, GR_PIXEL_F32);
  gr_image_destroy(fwd);
  gr_image_destroy(inv);
  return s;
}

static gr_status write_outputs(run_state *st) {
  char name[128], staged[4400], fieldpath[4400], prev[4400];
  gr_status s = GR_OK;
  prev[0] = '\0';
  (void)fieldpath;
  if (st->args.t0) snprintf(prev, sizeof prev, "%s", st->args.t0);
  for (int k = 0; s == GR_OK && k < st->args.nparams; ++k) {
    const gr_stage_result *r = &st->results[k];
    const char *fp = NULL;
    if (r->field) {
      /* A deformable stage's file is self-contained: its field holds the whole
       * chain (-t0, linear stages, deformation), exact on the fixed grid. */
      s = write_fields(st, k, &fp, fieldpath, sizeof fieldpath);
    }
    snprintf(name, sizeof name, "TransformParameters.%d.txt", k);
    if (s == GR_OK)
      s = gr_transform_parameters_write(gr_outdir_stage(&st->out, name, staged, sizeof staged), r, &st->fixed->geom,
                                        (prev[0] && !r->field) ? prev : NULL, fp, &st->outcfg[k]);
    gr_outdir_final(&st->out, name, prev, sizeof prev);
    if (s == GR_OK && st->outcfg[k].write_result_image) {
      snprintf(name, sizeof name, "result.%d.%s", k, st->outcfg[k].result_format);
      s = write_result_image(st, k, gr_outdir_stage(&st->out, name, staged, sizeof staged));
    }
  }
  return s;
}

static void log_header(run_state *st) {
  fprintf(st->log, "gigareg %s\nbackend: %s\nfixed: %s\nmoving: %s\n", GIGAREG_VERSION, st->be->ops->name,
          st->args.fixed, st->args.moving);
  for (int k = 0; k < st->args.nparams; ++k)
    fprintf(st->log, "stage %d: %s (%s)\n", k, stage_name(st->stages[k].kind), st->args.params[k]);
  fprintf(st->log, "stage\tlevel\titeration\tmetric\n");
}

/* The field of the last deformable stage (internal form, y = A (x + u(x)) + t), or NULL. */
static const gr_image *last_field(const run_state *st) {
  const gr_image *u = NULL;
  for (int k = 0; k < st->args.nparams; ++k)
    if (st->results[k].field) u = st->results[k].field;
  return u;
}

/* --outputVolume and --outputTransform, under temporary names beside them
 * (committed by commit_direct_outputs once everything else succeeded). The
 * transform is the whole chain fixed -> moving in LPS: ITK's
 * DisplacementFieldTransform (what Slicer loads as a grid transform), or an ITK
 * affine when every stage is linear and a .tfm was asked for. */
static gr_status write_direct_outputs(run_state *st) {
  const int n = st->args.nparams;
  gr_status s = GR_OK;
  if (st->args.output_volume) {
    gr_direct_tmp_path(st->args.output_volume, st->volume_tmp, sizeof st->volume_tmp);
    s = write_result_image(st, n - 1, st->volume_tmp);
  }
  if (s != GR_OK || !st->args.output_transform) return s;
  gr_direct_tmp_path(st->args.output_transform, st->transform_tmp, sizeof st->transform_tmp);
  gr_affine A;
  s = gr_chain_affine(st->have_initial ? &st->initial : NULL, st->results, n, n, &A);
  if (s != GR_OK) return s;
  if (gr_is_itk_transform_path(st->args.output_transform)) return gr_write_itk_affine(st->transform_tmp, &A);
  gr_image *fwd = NULL;
  s = gr_export_fields(st->be, &A, last_field(st), NULL, &st->fixed->geom, &st->moving->geom, &fwd, NULL);
  if (s == GR_OK) s = gr_image_write(st->transform_tmp, fwd, GR_PIXEL_F32);
  gr_image_destroy(fwd);
  return s;
}

static gr_status commit_direct_outputs(run_state *st) {
  const char *final[2] = {st->args.output_volume, st->args.output_transform};
  char *tmp[2] = {st->volume_tmp, st->transform_tmp};
  for (int i = 0; i < 2; ++i) {
    if (!final[i] || !tmp[i][0] || !strcmp(tmp[i], final[i])) continue;
    if (rename(tmp[i], final[i]) != 0) return gr_error(GR_ERR_IO, "cannot write '%s'", final[i]);
    tmp[i][0] = '\0';
  }
  return GR_OK;
}

static void abort_direct_outputs(run_state *st) {
  if (st->volume_tmp[0]) unlink(st->volume_tmp);
  if (st->transform_tmp[0]) unlink(st->transform_tmp);
}

/* det(I + grad u) of the last deformable stage on the fixed grid: the
 * deformable part (the linear stages scale it by det A everywhere, and cannot fold). */
static gr_status field_jacobian(run_state *st, const gr_image *u, gr_image **out) {
  gr_backend *be = st->be;
  const int64_t n = gr_image_nvox(u);
  gr_grid g;
  gr_status s = gr_grid_from_geometry(&u->geom, &g);
  float *du = be->ops->alloc(be, (size_t)n * 12), *dj = be->ops->alloc(be, (size_t)n * 4);
  if (s == GR_OK) s = (du && dj) ? be->ops->upload(be, du, u->data, (size_t)n * 12) : GR_ERR_NOMEM;
  if (s == GR_OK) s = be->ops->jacobian_det(be, &g, du, dj);
  if (s == GR_OK) s = gr_image_create(&u->geom, 1, out);
  if (s == GR_OK) s = be->ops->download(be, (*out)->data, dj, (size_t)n * 4);
  if (du) be->ops->free(be, du);
  if (dj) be->ops->free(be, dj);
  return s;
}

static gr_status write_qa(run_state *st) {
  gr_image *before = NULL, *after = NULL, *jac = NULL;
  gr_status s = resample_moving(st, 0, GR_INTERP_LINEAR, 0.0, &before);
  if (s == GR_OK) s = resample_moving(st, st->args.nparams, GR_INTERP_LINEAR, 0.0, &after);
  if (s == GR_OK && last_field(st)) s = field_jacobian(st, last_field(st), &jac);
  if (s == GR_OK) {
    gr_qa_input q;
    memset(&q, 0, sizeof q);
    q.fixed = st->fixed;
    q.before = before;
    q.after = after;
    q.jacobian = jac;
    q.history = &st->history;
    q.nstages = st->args.nparams;
    for (int k = 0; k < st->args.nparams; ++k) {
      q.stage_names[k] = stage_name(st->stages[k].kind);
      q.levels[k] = st->stages[k].levels;
    }
    s = gr_qa_write(&q, &st->out);
  }
  gr_image_destroy(before);
  gr_image_destroy(after);
  gr_image_destroy(jac);
  return s;
}

/* -slabs under mpirun: every rank reads only its slabs, registers them
 * (gr_register_slabs) and writes its planes of every image into files rank 0
 * stages; rank 0 alone writes the parameter files and the log and publishes
 * the folder. The files equal the default mode's. */
static gr_status slab_outputs(run_state *st, gr_slab_job *j) {
  char name[128], staged[4400], fieldpath[4400], prev[4400];
  const int writer = gr_comm_rank(st->comm) == 0;
  gr_status s = GR_OK;
  prev[0] = '\0';
  if (st->args.t0) snprintf(prev, sizeof prev, "%s", st->args.t0);
  const gr_image *u = NULL;
  for (int k = 0; s == GR_OK && k < st->args.nparams; ++k) {
    const gr_stage_result *r = &st->results[k];
    if (r->field) u = r->field;
    gr_affine A;
    s = gr_chain_affine(st->have_initial ? &st->initial : NULL, st->results, st->args.nparams, k + 1, &A);
    fieldpath[0] = '\0';
    if (s == GR_OK)
      s = gr_cli_slab_write_stage(j, &A, r, u, k, &st->outcfg[k], writer ? &st->out : NULL, fieldpath,
                                  sizeof fieldpath);
    if (s != GR_OK || !writer) continue;
    snprintf(name, sizeof name, "TransformParameters.%d.txt", k);
    s = gr_transform_parameters_write(gr_outdir_stage(&st->out, name, staged, sizeof staged), r, &j->fixed_whole,
                                      (prev[0] && !r->field) ? prev : NULL, r->field ? fieldpath : NULL,
                                      &st->outcfg[k]);
    gr_outdir_final(&st->out, name, prev, sizeof prev);
  }
  return gr_comm_agree_msg(st->comm, s);
}

static gr_status run_slabs(run_state *st) {
  gr_slab_job j;
  memset(&j, 0, sizeof j);
  gr_status s = GR_OK;
  if (st->args.qa || st->args.output_volume || st->args.output_transform)
    s = gr_error(GR_ERR_UNSUPPORTED, "-slabs writes the elastix outputs of -out only (not -qa, --outputVolume, --outputTransform)");
  else if (!st->args.out)
    s = gr_error(GR_ERR_INVALID_ARG, "-slabs needs -out");
  if (s == GR_OK) s = gr_cli_slab_read(st->comm, &st->args, &j);
  for (int k = 0; s == GR_OK && k < st->args.nparams; ++k)
    gr_stage_config_resolve_grid_spacing(&st->stages[k], &j.fixed_whole);
  if (s == GR_OK && st->args.t0) {
    s = gr_transform_parameters_read_affine(st->args.t0, &st->initial);
    st->have_initial = (s == GR_OK);
  }
  if (s == GR_OK) s = make_backend(st); /* may wrap the MPI communicator in NCCL */
  j.comm = st->comm;
  j.be = st->be;
  const int writer = gr_comm_rank(st->comm) == 0;
  if (s == GR_OK && writer) {
    s = gr_outdir_open(&st->out, st->args.out);
    st->out_open = s == GR_OK;
  }
  s = gr_comm_agree_msg(st->comm, s);
  char logpath[4400];
  if (s == GR_OK && st->out_open) {
    st->log = fopen(gr_outdir_stage(&st->out, "elastix.log", logpath, sizeof logpath), "w");
    if (!st->log) s = gr_error(GR_ERR_IO, "cannot write '%s'", logpath);
    else log_header(st);
  }
  s = gr_comm_agree_msg(st->comm, s);
  gr_reg_options opt;
  memset(&opt, 0, sizeof opt);
  opt.progress = writer ? on_progress : NULL;
  opt.progress_user = st;
  opt.log = st->log;
  opt.seed = st->args.seed;
  const gr_slab_inputs in = {j.fixed_whole, j.moving_whole, j.fixed, j.moving, j.fmask, j.mmask};
  if (s == GR_OK)
    s = gr_register_slabs(st->be, st->comm, &in, st->have_initial ? &st->initial : NULL, st->stages,
                          st->args.nparams, &opt, st->results);
  if (s == GR_OK) s = slab_outputs(st, &j);
  s = finish_run_log(st, s, logpath);
  if (s == GR_OK && st->out_open) s = gr_outdir_publish(&st->out);
  gr_cli_slab_clear(&j);
  return s;
}

static gr_status run(run_state *st) {
  gr_status s = load_params(st);
  if (s == GR_OK) s = check_requests(st);
  /* Before any voxel is read: a run that cannot fit fails now, with the planner's numbers. */
  if (s == GR_OK)
    s = gr_cli_memory_check(&st->args, st->stages, st->args.nparams, st->comm ? gr_comm_size(st->comm) : 1);
  if (s == GR_OK && st->args.slabs && st->comm && gr_comm_size(st->comm) > 1) return run_slabs(st);
  if (s == GR_OK && st->args.slabs && !st->args.quiet)
    fprintf(stderr, "gigareg: note: -slabs has no effect without mpirun (one process reads whole images)\n");
  if (s == GR_OK) s = load_inputs(st);
  if (s == GR_OK) s = make_backend(st);
  /* Grid Parallel under MPI: every rank computes, rank 0 alone writes (the
   * fields come back whole on every rank). */
  const int writer = !st->comm || gr_comm_rank(st->comm) == 0; /* no comm yet when an early step failed */
  if (s == GR_OK && st->args.out && writer) {
    s = gr_outdir_open(&st->out, st->args.out);
    st->out_open = s == GR_OK;
  }
  if (s != GR_OK) return s;
  char logpath[4400];
  if (st->out_open) {
    st->log = fopen(gr_outdir_stage(&st->out, "elastix.log", logpath, sizeof logpath), "w");
    if (!st->log) return gr_error(GR_ERR_IO, "cannot write '%s'", logpath);
    log_header(st);
  }
  gr_reg_options opt;
  memset(&opt, 0, sizeof opt);
  opt.progress = writer ? on_progress : NULL;
  opt.progress_user = st;
  opt.log = st->log;
  opt.seed = st->args.seed;
  int shards = st->args.shards;
  for (int k = 0; k < st->args.nparams; ++k) shards = st->stages[k].shards > shards ? st->stages[k].shards : shards;
  if (shards > 1 && gr_comm_size(st->comm) == 1)
    s = gr_register_local_shards(st->be, shards, st->fixed, st->moving, st->fmask, st->mmask,
                                 st->have_initial ? &st->initial : NULL, st->stages, st->args.nparams, &opt,
                                 st->results);
  else
    s = gr_register(st->be, st->comm, st->fixed, st->moving, st->fmask, st->mmask,
                    st->have_initial ? &st->initial : NULL, st->stages, st->args.nparams, &opt, st->results);
  if (!writer) return finish_run_log(st, s, logpath); /* no log on this rank */
  if (s == GR_OK && st->args.slicer_progress && !st->args.quiet) gr_slicer_comment(&st->slicer, "writing outputs", 0.96);
  if (s == GR_OK && st->out_open) s = write_outputs(st);
  if (s == GR_OK) s = write_direct_outputs(st);
  if (s == GR_OK && st->args.qa) s = write_qa(st);
  s = finish_run_log(st, s, logpath);
  if (s == GR_OK && st->out_open) s = gr_outdir_publish(&st->out);
  if (s == GR_OK) s = commit_direct_outputs(st);
  return s;
}

static void cleanup(run_state *st, int failed) {
  if (st->log) fclose(st->log);
  if (failed) abort_direct_outputs(st);
  gr_qa_history_free(&st->history);
  if (st->out_open && failed) {
    gr_outdir_abort(&st->out);
    if (st->out.created_final) rmdir(st->out.final_dir);
  }
  for (int k = 0; k < st->args.nparams; ++k) gr_stage_result_clear(&st->results[k]);
  gr_image_destroy(st->fixed);
  gr_image_destroy(st->moving);
  gr_image_destroy(st->fmask);
  gr_image_destroy(st->mmask);
  if (st->be) gr_backend_destroy(st->be);
  if (st->comm) gr_comm_destroy(st->comm);
}

static int run_main_with(int argc, char **argv, gr_comm *mpi);

int main(int argc, char **argv) {
  /* Started by mpirun with several ranks: one Grid Parallel shard per rank. */
  gr_comm *mpi = NULL;
  if (gr_comm_launched_by_mpi() && gr_comm_mpi_world(&argc, &argv, &mpi) != GR_OK) {
    fprintf(stderr, "gigareg: error: %s\n", gr_last_error());
    return 1;
  }
  const int rc = run_main_with(argc, argv, mpi);
  if (mpi) gr_comm_mpi_finalize(); /* after the communicator is gone (cleanup) */
  return rc;
}

static int run_main_with(int argc, char **argv, gr_comm *mpi) {
  static run_state st; /* large; keep it off the stack */
  memset(&st, 0, sizeof st);
  st.comm = mpi;
  const int rc = gr_cli_parse(argc, argv, &st.args);
  if (rc != 0) return rc;
  if (st.args.help) { gr_cli_usage(stdout); return 0; }
  if (st.args.version) { printf("gigareg %s\n", GIGAREG_VERSION); return 0; }
  if (st.args.xml) { gr_slicer_print_xml(stdout); return 0; }
  if (st.args.plan) return gr_cli_plan(&st.args);
  const int rank0 = !mpi || gr_comm_rank(mpi) == 0; /* the other MPI ranks stay silent */
  const int slicer = st.args.slicer_progress && !st.args.quiet && rank0;
  if (slicer) gr_slicer_start(&st.slicer, stdout, "registering the moving volume to the fixed volume");
  gr_status s = run(&st);
  if (s != GR_OK && rank0) {
    const char *msg = gr_last_error();
    fprintf(stderr, "gigareg: error: %s\n", msg[0] ? msg : gr_strerror(s));
  } else if (s != GR_OK || !rank0) {
  } else if (slicer) {
    gr_slicer_end(&st.slicer);
  } else if (!st.args.quiet) {
    fprintf(stderr, "gigareg: done; results in %s\n", st.args.out ? st.args.out : st.args.output_volume ? st.args.output_volume : st.args.output_transform);
  }
  cleanup(&st, s != GR_OK);
  return s == GR_OK ? 0 : 1;
}
