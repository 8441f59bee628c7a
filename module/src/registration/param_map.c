/* elastix parameter map -> gr_stage_config + gr_output_config.
 *
 * The rule: every key is either honoured (read here, which marks it used) or
 * named in a warning. Keys are handled in groups (transform, registration,
 * pyramid, metric, iterations, optimizer, initialisation, deformable grid,
 * output); a final sweep warns about every key nobody read, with a reason from
 * a table of known elastix keys. docs/elastix-compatibility.md lists them all. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "gigareg/param_map.h"

typedef struct gr_map_ctx {
  const gr_param_map *m;
  const char *origin;
  FILE *warn;
  gr_stage_config *st;
  gr_output_config *out;
  int deformable;
} gr_map_ctx;

/* ---- warnings ------------------------------------------------------------ */

static void warnf(const gr_map_ctx *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void warnf(const gr_map_ctx *c, const char *fmt, ...) {
  if (!c->warn) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(c->warn, "warning: %s: ", c->origin);
  vfprintf(c->warn, fmt, ap);
  fputc('\n', c->warn);
  va_end(ap);
}

static int looks_numeric(const char *s) {
  const char *p = s;
  if (*p == '+' || *p == '-') ++p;
  int d = 0;
  for (; *p; ++p) {
    if (*p >= '0' && *p <= '9') ++d;
    else if (!strchr(".eE+-", *p)) return 0;
  }
  return d > 0;
}

/* The values of key as they would appear in the file: numbers bare, strings
 * quoted, at most 6 values and 40 characters each. */
static void format_values(const gr_param_map *m, const char *key, char *buf, size_t cap) {
  const int n = gr_param_count(m, key);
  size_t len = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && i < 6 && len + 1 < cap; ++i) {
    const char *v = gr_param_get(m, key, i);
    const char *q = looks_numeric(v) ? "" : "\"";
    const int w = snprintf(buf + len, cap - len, "%s%s%.40s%s%s", i ? " " : "", q, v, strlen(v) > 40 ? "..." : "", q);
    if (w < 0) break;
    len += (size_t)w;
  }
  if (n > 6 && len + 1 < cap) snprintf(buf + len, cap - len, " ... (%d values)", n);
}

/* One warning naming key, its values and why it is ignored; marks it used so
 * the final sweep does not repeat it. */
static void warn_key(const gr_map_ctx *c, const char *key, const char *why) {
  char vals[400];
  format_values(c->m, key, vals, sizeof vals);
  (void)gr_param_get(c->m, key, 0);
  warnf(c, "key '%s' (%s) ignored: %s", key, vals, why);
}

static int has(const gr_map_ctx *c, const char *key) { return gr_param_count(c->m, key) > 0; }

static const char *str_or(const gr_map_ctx *c, const char *key, const char *dflt) {
  const char *v = dflt;
  (void)gr_param_get_string(c->m, key, 0, &v);
  return v;
}

static int name_in(const char *v, const char *const *list) {
  for (; *list; ++list)
    if (strcmp(v, *list) == 0) return 1;
  return 0;
}

static gr_status bad(const gr_map_ctx *c, gr_status code, const char *key, const char *value, const char *why) {
  return gr_error(code, "%s: %s: '%.80s' %s", c->origin, key, value, why);
}

/* A 16-bit storage key ("float" or the 16-bit name): *on set to 0 or 1; absent: unchanged. */
static gr_status storage_choice(const gr_map_ctx *c, const char *key, const char *name16, int *on) {
  if (!has(c, key)) return GR_OK;
  const char *v = str_or(c, key, "float");
  if (strcmp(v, name16) == 0 || strcmp(v, "float") == 0) {
    *on = strcmp(v, name16) == 0;
    return GR_OK;
  }
  char why[64];
  snprintf(why, sizeof why, "is not \"float\" or \"%s\"", name16);
  return bad(c, GR_ERR_PARAM, key, v, why);
}

/* ---- per-level arrays -------------------------------------------------------- */

/* Defaults are given for 3 levels; for L levels align them at the finest level
 * (extra coarse levels repeat the coarsest default). */
static void realign_defaults(gr_stage_config *st, int levels) {
  const gr_stage_config d = *st;
  for (int l = 0; l < levels; ++l) {
    int k = 3 - levels + l;
    if (k < 0) k = 0;
    st->iterations[l] = d.iterations[k];
    st->learning_rate[l] = d.learning_rate[k];
  }
  st->levels = levels;
}

/* ---- transform ------------------------------------------------------------------ */

typedef struct gr_transform_name {
  const char *name;
  gr_stage_kind kind;
  const char *note; /* warning text, NULL = faithful mapping */
} gr_transform_name;

static const gr_transform_name gr_transforms[] = {
    {"TranslationTransform", GR_STAGE_TRANSLATION, NULL},
    {"EulerTransform", GR_STAGE_RIGID, NULL},
    {"AffineTransform", GR_STAGE_AFFINE, NULL},
    {"SimilarityTransform", GR_STAGE_AFFINE, "is run as an AffineTransform (GigaReg has no similarity stage)"},
    {"AffineDTITransform", GR_STAGE_AFFINE, "is run as an AffineTransform"},
    {"AffineLogTransform", GR_STAGE_AFFINE, "is run as an AffineTransform"},
    {"BSplineTransform", GR_STAGE_GREEDY,
     "is run as GigaReg's dense greedy deformable stage; FinalGridSpacingInPhysicalUnits sets the field smoothing"},
    {"RecursiveBSplineTransform", GR_STAGE_GREEDY,
     "is run as GigaReg's dense greedy deformable stage; FinalGridSpacingInPhysicalUnits sets the field smoothing"},
    {"GigaRegGreedyTransform", GR_STAGE_GREEDY, NULL},
    {"GigaRegSyNTransform", GR_STAGE_SYN, NULL},
};

static const char *const gr_unsupported_transforms[] = {
    "DeformationFieldTransform", "SplineKernelTransform", "BSplineStackTransform", "BSplineTransformWithDiffusion",
    "MultiBSplineTransformWithNormal", "WeightedCombinationTransform", "EulerStackTransform",
    "TranslationStackTransform", "AffineLogStackTransform", NULL};

static gr_status map_transform(const gr_map_ctx *c, gr_stage_kind *kind, const char **note, const char **name) {
  if (!has(c, "Transform")) return gr_error(GR_ERR_PARAM, "%s: missing key 'Transform'", c->origin);
  *name = str_or(c, "Transform", "");
  for (size_t i = 0; i < sizeof gr_transforms / sizeof gr_transforms[0]; ++i) {
    if (strcmp(*name, gr_transforms[i].name) == 0) {
      *kind = gr_transforms[i].kind;
      *note = gr_transforms[i].note;
      return GR_OK;
    }
  }
  if (name_in(*name, gr_unsupported_transforms))
    return bad(c, GR_ERR_UNSUPPORTED, "Transform", *name, "is not supported by GigaReg");
  return bad(c, GR_ERR_PARAM, "Transform", *name, "is not an elastix or GigaReg transform");
}

/* ---- registration, dimensions ---------------------------------------------------- */

static gr_status map_registration(const gr_map_ctx *c) {
  const char *reg = str_or(c, "Registration", "MultiResolutionRegistration");
  if (strcmp(reg, "MultiResolutionRegistrationWithFeatures") == 0)
    return bad(c, GR_ERR_UNSUPPORTED, "Registration", reg, "is not supported by GigaReg");
  if (strcmp(reg, "MultiResolutionRegistration") != 0 && strcmp(reg, "MultiMetricMultiResolutionRegistration") != 0)
    return bad(c, GR_ERR_PARAM, "Registration", reg, "is not an elastix registration component");
  static const char *const dims[] = {"FixedImageDimension", "MovingImageDimension", NULL};
  for (int i = 0; dims[i]; ++i) {
    int d = 3;
    gr_status s = gr_param_get_int(c->m, dims[i], 0, &d);
    if (s != GR_OK) return s;
    if (d != 3) return gr_error(GR_ERR_UNSUPPORTED, "%s: %s: %d: GigaReg registers 3D images", c->origin, dims[i], d);
  }
  return GR_OK;
}

/* ---- pyramid ------------------------------------------------------------------- */

static const char *const gr_fixed_pyramids[] = {"FixedSmoothingImagePyramid", "FixedRecursiveImagePyramid",
                                                 "FixedShrinkingImagePyramid", "FixedGenericImagePyramid",
                                                 "OpenCLFixedGenericImagePyramid", NULL};
static const char *const gr_moving_pyramids[] = {"MovingSmoothingImagePyramid", "MovingRecursiveImagePyramid",
                                                  "MovingShrinkingImagePyramid", "MovingGenericImagePyramid",
                                                  "OpenCLMovingGenericImagePyramid", NULL};

/* First present key of a list. */
static const char *first_key(const gr_map_ctx *c, const char *const *keys) {
  for (; *keys; ++keys)
    if (has(c, *keys)) return *keys;
  return NULL;
}

static gr_status read_schedule(const gr_map_ctx *c, const char *key, int levels, double *shrink) {
  const int n = gr_param_count(c->m, key);
  if (n != 3 * levels && n != levels)
    return gr_error(GR_ERR_PARAM, "%s: %s has %d values; NumberOfResolutions %d needs %d (3 per level)", c->origin, key,
                    n, levels, 3 * levels);
  const int per = n / levels;
  int anisotropic = 0;
  for (int l = 0; l < levels; ++l) {
    for (int a = 0; a < per; ++a) {
      double f = 0.0;
      gr_status s = gr_param_get_double(c->m, key, l * per + a, &f);
      if (s != GR_OK) return s;
      if (!(f >= 1.0))
        return gr_error(GR_ERR_PARAM, "%s: %s: factor %g at resolution %d must be >= 1", c->origin, key, f, l);
      if (a == 0) shrink[l] = f;
      else if (f != shrink[l]) anisotropic = 1;
    }
  }
  if (anisotropic)
    warnf(c, "key '%s': per-axis factors differ; GigaReg shrinks isotropically by the first factor of each level", key);
  return GR_OK;
}

static gr_status map_levels(gr_map_ctx *c) {
  int levels = c->st->levels;
  gr_status s = gr_param_get_int(c->m, "NumberOfResolutions", 0, &levels);
  if (s != GR_OK) return s;
  if (levels < 1 || levels > GR_MAX_LEVELS)
    return gr_error(GR_ERR_PARAM, "%s: NumberOfResolutions: %d must be in 1..%d", c->origin, levels, GR_MAX_LEVELS);
  realign_defaults(c->st, levels);
  return GR_OK;
}

static gr_status map_pyramid(gr_map_ctx *c) {
  gr_stage_config *st = c->st;
  const int L = st->levels;
  const char *fp = str_or(c, "FixedImagePyramid", "FixedSmoothingImagePyramid");
  const char *mp = str_or(c, "MovingImagePyramid", "MovingSmoothingImagePyramid");
  if (!name_in(fp, gr_fixed_pyramids)) return bad(c, GR_ERR_PARAM, "FixedImagePyramid", fp, "is not an elastix fixed image pyramid");
  if (!name_in(mp, gr_moving_pyramids)) return bad(c, GR_ERR_PARAM, "MovingImagePyramid", mp, "is not an elastix moving image pyramid");
  if (strcmp(fp + 5, mp + 6) != 0) /* compare past "Fixed" / "Moving" */
    warnf(c, "FixedImagePyramid \"%s\" and MovingImagePyramid \"%s\" differ; GigaReg builds both pyramids like the fixed one", fp, mp);

  for (int l = 0; l < L; ++l) st->shrink[l] = ldexp(1.0, L - 1 - l);
  static const char *const fixed_keys[] = {"ImagePyramidSchedule", "FixedImagePyramidSchedule",
                                           "ImagePyramidRescaleSchedule", "FixedImagePyramidRescaleSchedule", NULL};
  static const char *const moving_keys[] = {"MovingImagePyramidSchedule", "MovingImagePyramidRescaleSchedule", NULL};
  const char *sk = first_key(c, fixed_keys);
  if (!sk) sk = first_key(c, moving_keys);
  if (sk) {
    gr_status s = read_schedule(c, sk, L, st->shrink);
    if (s != GR_OK) return s;
  }
  for (int i = 0; fixed_keys[i]; ++i)
    if (has(c, fixed_keys[i]) && !gr_param_was_used(c->m, fixed_keys[i]))
      warn_key(c, fixed_keys[i], "GigaReg uses one schedule for both images (the first schedule key given)");
  for (int i = 0; moving_keys[i]; ++i)
    if (has(c, moving_keys[i]) && !gr_param_was_used(c->m, moving_keys[i]))
      warn_key(c, moving_keys[i], "GigaReg uses one schedule for both images (the first schedule key given)");

  /* Smoothing in fine voxels, as elastix's pyramids do by default: sigma =
   * 0.5 * factor (Smoothing/Recursive pyramids), the same but 0 for a factor of
   * 1 at the last level (Generic), none (Shrinking). */
  const int shrinking = strstr(fp, "Shrinking") != NULL;
  const int generic = strstr(fp, "Generic") != NULL;
  for (int l = 0; l < L; ++l) {
    st->sigma_vox[l] = shrinking ? 0.0 : 0.5 * st->shrink[l];
    if (generic && l == L - 1 && st->shrink[l] == 1.0) st->sigma_vox[l] = 0.0;
  }
  if (has(c, "GigaRegSmoothingSigmas")) {
    for (int l = 0; l < L; ++l) {
      gr_status s = gr_param_get_double(c->m, "GigaRegSmoothingSigmas", l, &st->sigma_vox[l]);
      if (s != GR_OK) return s;
      if (!(st->sigma_vox[l] >= 0.0))
        return gr_error(GR_ERR_PARAM, "%s: GigaRegSmoothingSigmas: %g must be >= 0", c->origin, st->sigma_vox[l]);
    }
  }
  static const char *const mm_keys[] = {"ImagePyramidSmoothingSchedule", "FixedImagePyramidSmoothingSchedule",
                                        "MovingImagePyramidSmoothingSchedule", NULL};
  for (int i = 0; mm_keys[i]; ++i)
    if (has(c, mm_keys[i]))
      warn_key(c, mm_keys[i], "sigmas in mm are not mapped; set GigaRegSmoothingSigmas (per level, in fine voxels)");
  return GR_OK;
}

/* ---- metric -------------------------------------------------------------------- */

typedef enum { GR_MC_SIMILARITY, GR_MC_PENALTY, GR_MC_UNSUPPORTED } gr_metric_class;

typedef struct gr_metric_name {
  const char *name;
  gr_metric_class cls;
  gr_metric_kind kind;
  const char *note;
} gr_metric_name;

static const gr_metric_name gr_metrics[] = {
    {"AdvancedMattesMutualInformation", GR_MC_SIMILARITY, GR_METRIC_MI, NULL},
    {"MattesMutualInformation", GR_MC_SIMILARITY, GR_METRIC_MI, NULL},
    {"GigaRegAdvancedMattesMutualInformation", GR_MC_SIMILARITY, GR_METRIC_MI, NULL},
    {"AdvancedNormalizedCorrelation", GR_MC_SIMILARITY, GR_METRIC_NCC, NULL},
    {"NormalizedCorrelation", GR_MC_SIMILARITY, GR_METRIC_NCC, NULL},
    {"AdvancedMeanSquares", GR_MC_SIMILARITY, GR_METRIC_MSE, NULL},
    {"GigaRegLocalNormalizedCorrelation", GR_MC_SIMILARITY, GR_METRIC_LNCC, NULL},
    {"NormalizedMutualInformation", GR_MC_SIMILARITY, GR_METRIC_MI, "is optimised as Mattes mutual information"},
    {"MutualInformationHistogram", GR_MC_SIMILARITY, GR_METRIC_MI, "is optimised as Mattes mutual information"},
    {"ViolaWellsMutualInformation", GR_MC_SIMILARITY, GR_METRIC_MI, "is optimised as Mattes mutual information"},
    {"TransformBendingEnergyPenalty", GR_MC_PENALTY, 0, NULL},
    {"TransformRigidityPenalty", GR_MC_PENALTY, 0, NULL},
    {"DisplacementMagnitudePenalty", GR_MC_PENALTY, 0, NULL},
    {"DistancePreservingRigidityPenalty", GR_MC_PENALTY, 0, NULL},
    {"CorrespondingPointsEuclideanDistanceMetric", GR_MC_PENALTY, 0, NULL},
    {"MissingStructurePenalty", GR_MC_PENALTY, 0, NULL},
    {"PolydataDummyPenalty", GR_MC_PENALTY, 0, NULL},
    {"StatisticalShapePenalty", GR_MC_PENALTY, 0, NULL},
    {"AdvancedKappaStatistic", GR_MC_UNSUPPORTED, 0, NULL},
    {"GradientDifference", GR_MC_UNSUPPORTED, 0, NULL},
    {"KNNGraphAlphaMutualInformation", GR_MC_UNSUPPORTED, 0, NULL},
    {"NormalizedGradientCorrelation", GR_MC_UNSUPPORTED, 0, NULL},
    {"PatternIntensity", GR_MC_UNSUPPORTED, 0, NULL},
    {"PCAMetric", GR_MC_UNSUPPORTED, 0, NULL},
    {"PCAMetric2", GR_MC_UNSUPPORTED, 0, NULL},
    {"SumOfPairwiseCorrelationCoefficientsMetric", GR_MC_UNSUPPORTED, 0, NULL},
    {"SumSquaredTissueVolumeDifference", GR_MC_UNSUPPORTED, 0, NULL},
    {"VarianceOverLastDimensionMetric", GR_MC_UNSUPPORTED, 0, NULL},
};

static const gr_metric_name *find_metric(const char *name) {
  for (size_t i = 0; i < sizeof gr_metrics / sizeof gr_metrics[0]; ++i)
    if (strcmp(name, gr_metrics[i].name) == 0) return &gr_metrics[i];
  return NULL;
}

/* The first supported similarity metric is optimised; every other Metric
 * value is named in a warning. Only penalties (or no Metric) keep the stage's
 * default metric. */
static gr_status choose_metric(gr_map_ctx *c) {
  const int n = gr_param_count(c->m, "Metric");
  int chosen = -1;
  const char *unsupported = NULL;
  for (int i = 0; i < n; ++i) {
    const char *v = gr_param_get(c->m, "Metric", i);
    const gr_metric_name *mn = find_metric(v);
    if (!mn) return bad(c, GR_ERR_PARAM, "Metric", v, "is not an elastix or GigaReg metric");
    if (mn->cls == GR_MC_SIMILARITY && chosen < 0) chosen = i;
    if (mn->cls == GR_MC_UNSUPPORTED && !unsupported) unsupported = v;
  }
  if (chosen < 0 && unsupported)
    return bad(c, GR_ERR_UNSUPPORTED, "Metric", unsupported,
               "is not supported (use AdvancedMattesMutualInformation, AdvancedNormalizedCorrelation, "
               "AdvancedMeanSquares or GigaRegLocalNormalizedCorrelation)");
  const char *cname = chosen >= 0 ? gr_param_get(c->m, "Metric", chosen) : NULL;
  for (int i = 0; i < n; ++i) {
    const char *v = gr_param_get(c->m, "Metric", i);
    const gr_metric_name *mn = find_metric(v);
    if (i == chosen) {
      c->st->metric.kind = mn->kind;
      if (mn->note) warnf(c, "Metric \"%s\" %s", v, mn->note);
    } else if (mn->cls == GR_MC_PENALTY) {
      warnf(c, "Metric \"%s\" ignored: GigaReg has no transform penalty terms (its deformable stages regularise by smoothing)", v);
    } else {
      warnf(c, "Metric \"%s\" ignored: GigaReg optimises only the first supported similarity metric (\"%s\")", v, cname);
    }
  }
  return GR_OK;
}

static gr_status map_bins(gr_map_ctx *c) {
  gr_metric_spec *ms = &c->st->metric;
  const int L = c->st->levels;
  int varies = 0;
  const char *key = has(c, "NumberOfFixedHistogramBins") ? "NumberOfFixedHistogramBins" : "NumberOfHistogramBins";
  if (has(c, key)) {
    int first = 0;
    for (int l = 0; l < L; ++l) {
      int b = 0;
      gr_status s = gr_param_get_int(c->m, key, l, &b);
      if (s != GR_OK) return s;
      if (b < 4 || b > 1024)
        return gr_error(GR_ERR_PARAM, "%s: %s: %d must be in 4..1024", c->origin, key, b);
      if (l == 0) first = b;
      else if (b != first) varies = 1;
      ms->mi_bins = b; /* the finest level's value wins */
    }
    if (varies)
      warnf(c, "key '%s': bins vary per resolution; GigaReg uses one value per stage (%d, the finest level's)", key,
            ms->mi_bins);
  }
  if (strcmp(key, "NumberOfFixedHistogramBins") == 0 && has(c, "NumberOfHistogramBins"))
    warn_key(c, "NumberOfHistogramBins", "NumberOfFixedHistogramBins takes precedence");
  if (has(c, "NumberOfMovingHistogramBins")) {
    int mb = ms->mi_bins;
    gr_status s = gr_param_get_int(c->m, "NumberOfMovingHistogramBins", L - 1, &mb);
    if (s != GR_OK) return s;
    if (mb != ms->mi_bins)
      warnf(c, "key 'NumberOfMovingHistogramBins' (%d) differs from the fixed bins; GigaReg uses %d bins for both", mb,
            ms->mi_bins);
  }
  return GR_OK;
}

static gr_status map_metric(gr_map_ctx *c) {
  gr_status s = choose_metric(c);
  if (s != GR_OK) return s;
  if (c->st->metric.kind == GR_METRIC_MI) {
    s = map_bins(c);
    if (s != GR_OK) return s;
  }
  if (c->st->metric.kind == GR_METRIC_LNCC) {
    int r = c->st->metric.lncc_radius;
    s = gr_param_get_int(c->m, "GigaRegLNCCRadius", 0, &r);
    if (s != GR_OK) return s;
    if (r < 1 || r > 32) return gr_error(GR_ERR_PARAM, "%s: GigaRegLNCCRadius: %d must be in 1..32", c->origin, r);
    c->st->metric.lncc_radius = r;
  }
  return GR_OK;
}

/* ---- iterations, optimizer ----------------------------------------------------- */

static gr_status map_iterations(gr_map_ctx *c) {
  if (!has(c, "MaximumNumberOfIterations")) return GR_OK;
  for (int l = 0; l < c->st->levels; ++l) {
    int it = 0;
    gr_status s = gr_param_get_int(c->m, "MaximumNumberOfIterations", l, &it);
    if (s != GR_OK) return s;
    if (it < 0) return gr_error(GR_ERR_PARAM, "%s: MaximumNumberOfIterations: %d must be >= 0", c->origin, it);
    c->st->iterations[l] = it;
  }
  return GR_OK;
}

static const char *const gr_opt_gd[] = {"RegularStepGradientDescent", "StandardGradientDescent",
                                        "GigaRegGradientDescent", NULL};
static const char *const gr_opt_adam[] = {"AdamOptimizer", "GigaRegAdam", NULL};
/* Run as the stage's default optimizer without comment: elastix's standard choice. */
static const char *const gr_opt_default[] = {"AdaptiveStochasticGradientDescent", NULL};
/* Run as the stage's default optimizer with a warning. */
static const char *const gr_opt_other[] = {
    "AdaGrad", "AdaptiveStochasticLBFGS", "AdaptiveStochasticVarianceReducedGradient", "CMAEvolutionStrategy",
    "ConjugateGradient", "ConjugateGradientFRPR", "FiniteDifferenceGradientDescent", "FullSearch", "Powell",
    "PreconditionedGradientDescent", "PreconditionedStochasticGradientDescent", "QuasiNewtonLBFGS",
    "RSGDEachParameterApart", "Simplex", "SimultaneousPerturbation", NULL};

static const char *opt_label(gr_optimizer_kind k) { return k == GR_OPT_ADAM ? "Adam" : "gradient descent"; }

static gr_status map_optimizer(gr_map_ctx *c) {
  gr_stage_config *st = c->st;
  if (has(c, "Optimizer")) {
    const char *o = str_or(c, "Optimizer", "");
    if (name_in(o, gr_opt_gd) || name_in(o, gr_opt_adam)) {
      const gr_optimizer_kind k = name_in(o, gr_opt_adam) ? GR_OPT_ADAM : GR_OPT_GD;
      if (c->deformable && k != GR_OPT_ADAM)
        warnf(c, "Optimizer \"%s\": deformable stages always take Adam-normalised steps", o);
      else
        st->optimizer = k;
    } else if (name_in(o, gr_opt_other)) {
      warnf(c, "Optimizer \"%s\" is run as GigaReg's %s", o, opt_label(st->optimizer));
    } else if (!name_in(o, gr_opt_default)) {
      return bad(c, GR_ERR_PARAM, "Optimizer", o, "is not an elastix or GigaReg optimizer");
    }
  }
  if (has(c, "GigaRegLearningRate")) {
    for (int l = 0; l < st->levels; ++l) {
      gr_status s = gr_param_get_double(c->m, "GigaRegLearningRate", l, &st->learning_rate[l]);
      if (s != GR_OK) return s;
      if (!(st->learning_rate[l] > 0.0))
        return gr_error(GR_ERR_PARAM, "%s: GigaRegLearningRate: %g must be > 0", c->origin, st->learning_rate[l]);
    }
  }
  struct { const char *key; double *dst; double lo; } reals[] = {
      {"GigaRegGradientSigma", &st->grad_sigma_vox, 0.0},
      {"GigaRegConvergenceTolerance", &st->convergence_tol, 0.0},
  };
  for (size_t i = 0; i < sizeof reals / sizeof reals[0]; ++i) {
    gr_status s = gr_param_get_double(c->m, reals[i].key, 0, reals[i].dst);
    if (s != GR_OK) return s;
    if (!(*reals[i].dst >= reals[i].lo))
      return gr_error(GR_ERR_PARAM, "%s: %s: %g must be >= %g", c->origin, reals[i].key, *reals[i].dst, reals[i].lo);
  }
  gr_status s = gr_param_get_int(c->m, "GigaRegConvergenceWindow", 0, &st->convergence_window);
  if (s != GR_OK) return s;
  if (st->convergence_window < 2)
    return gr_error(GR_ERR_PARAM, "%s: GigaRegConvergenceWindow: %d must be >= 2", c->origin, st->convergence_window);
  return GR_OK;
}

/* ---- initialisation, deformable grid ----------------------------------------- */

static gr_status map_init(gr_map_ctx *c) {
  if (c->deformable) return GR_OK; /* the sweep warns about the keys */
  int on = 0;
  gr_status s = gr_param_get_bool(c->m, "AutomaticTransformInitialization", 0, &on);
  if (s != GR_OK) return s;
  const char *method = str_or(c, "AutomaticTransformInitializationMethod", "GeometricalCenter");
  if (strcmp(method, "GeometricalCenter") != 0 && strcmp(method, "CenterOfGravity") != 0 &&
      strcmp(method, "Origins") != 0 && strcmp(method, "GeometryTop") != 0)
    return bad(c, GR_ERR_PARAM, "AutomaticTransformInitializationMethod", method,
               "is not one of GeometricalCenter, CenterOfGravity, Origins, GeometryTop");
  /* elastix initialises only when asked; so do we for elastix files. */
  c->st->init = GR_INIT_NONE;
  if (!on) return GR_OK;
  if (strcmp(method, "CenterOfGravity") == 0) {
    c->st->init = GR_INIT_CENTER_OF_MASS;
  } else {
    c->st->init = GR_INIT_GEOMETRIC_CENTER;
    if (strcmp(method, "GeometricalCenter") != 0)
      warnf(c, "AutomaticTransformInitializationMethod \"%s\" is run as \"GeometricalCenter\"", method);
  }
  return GR_OK;
}

/* Mean of the 1 or 3 values of a grid-spacing key; > 0 required. */
static gr_status grid_spacing(const gr_map_ctx *c, const char *key, double *mean) {
  const int n = gr_param_count(c->m, key);
  if (n != 1 && n != 3)
    return gr_error(GR_ERR_PARAM, "%s: %s has %d values; give 1 or 3", c->origin, key, n);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    double v = 0.0;
    gr_status s = gr_param_get_double(c->m, key, i, &v);
    if (s != GR_OK) return s;
    if (!(v > 0.0)) return gr_error(GR_ERR_PARAM, "%s: %s: %g must be > 0", c->origin, key, v);
    sum += v;
  }
  *mean = sum / n;
  return GR_OK;
}

/* A B-spline with control-point spacing h is about as smooth as a Gaussian of
 * sigma ~ h/2..h/4; h/4 keeps the dense field flexible enough to reach what a
 * B-spline of spacing h reaches, and 0.5 voxel is the greedy default floor. */
static double sigma_from_spacing_vox(double h_vox) { return fmax(0.5, h_vox / 4.0); }

static gr_status map_deformable(gr_map_ctx *c) {
  if (!c->deformable) return GR_OK; /* the sweep warns about B-spline keys */
  gr_stage_config *st = c->st;
  gr_status s = GR_OK;
  if (has(c, "FinalGridSpacingInPhysicalUnits")) {
    s = grid_spacing(c, "FinalGridSpacingInPhysicalUnits", &st->final_grid_spacing_mm);
    if (s == GR_OK && has(c, "FinalGridSpacingInVoxels"))
      warn_key(c, "FinalGridSpacingInVoxels", "FinalGridSpacingInPhysicalUnits takes precedence");
    if (s == GR_OK && has(c, "FinalGridSpacing"))
      warn_key(c, "FinalGridSpacing", "FinalGridSpacingInPhysicalUnits takes precedence");
  } else {
    const char *vk = has(c, "FinalGridSpacingInVoxels") ? "FinalGridSpacingInVoxels"
                     : has(c, "FinalGridSpacing")        ? "FinalGridSpacing" /* old name, in voxels */
                                                         : NULL;
    if (vk) {
      double h = 0.0;
      s = grid_spacing(c, vk, &h);
      if (s == GR_OK) st->field_sigma_vox = sigma_from_spacing_vox(h);
    }
  }
  if (s != GR_OK) return s;
  s = storage_choice(c, "GigaRegAdamMoments", "bfloat16", &st->adam_moments_bf16);
  if (s == GR_OK) s = storage_choice(c, "GigaRegImageStorage", "uint16", &st->image_u16);
  if (s != GR_OK) return s;
  if (has(c, "GigaRegFieldSigma")) {
    s = gr_param_get_double(c->m, "GigaRegFieldSigma", 0, &st->field_sigma_vox);
    if (s != GR_OK) return s;
    if (!(st->field_sigma_vox >= 0.0))
      return gr_error(GR_ERR_PARAM, "%s: GigaRegFieldSigma: %g must be >= 0", c->origin, st->field_sigma_vox);
    st->final_grid_spacing_mm = 0.0; /* explicit smoothing wins over the grid-spacing rule */
  }
  return GR_OK;
}

void gr_stage_config_resolve_grid_spacing(gr_stage_config *st, const gr_geometry *fixed) {
  if (!st || !fixed || !(st->final_grid_spacing_mm > 0.0)) return;
  if (st->kind != GR_STAGE_GREEDY && st->kind != GR_STAGE_SYN) return;
  const double sp = (fixed->spacing[0] + fixed->spacing[1] + fixed->spacing[2]) / 3.0;
  if (!(sp > 0.0)) return;
  st->field_sigma_vox = sigma_from_spacing_vox(st->final_grid_spacing_mm / sp);
}

/* ---- output -------------------------------------------------------------------- */

static gr_status map_output(gr_map_ctx *c) {
  gr_output_config *o = c->out;
  gr_status s = gr_param_get_bool(c->m, "WriteResultImage", 0, &o->write_result_image);
  if (s == GR_OK) s = gr_param_get_bool(c->m, "CompressResultImage", 0, &o->compress_result_image);
  if (s == GR_OK) s = gr_param_get_double(c->m, "DefaultPixelValue", 0, &o->default_pixel_value);
  if (s != GR_OK) return s;
  static const char *const formats[] = {"mhd", "mha", "nii", "nii.gz", "nrrd", "nhdr", NULL};
  const char *fmt = str_or(c, "ResultImageFormat", o->result_format);
  if (!name_in(fmt, formats))
    return bad(c, GR_ERR_PARAM, "ResultImageFormat", fmt, "is not supported (use mhd, mha, nii, nii.gz, nrrd or nhdr)");
  if (fmt != o->result_format) snprintf(o->result_format, sizeof o->result_format, "%s", fmt);
  if (has(c, "ResultImagePixelType")) {
    const char *pt = str_or(c, "ResultImagePixelType", "float");
    o->result_pixel_type = gr_elastix_pixel_type_from_name(pt);
    if (o->result_pixel_type == GR_PIXEL_UNKNOWN)
      return bad(c, GR_ERR_PARAM, "ResultImagePixelType", pt,
                 "is not supported (use float, double, short, unsigned short, char, unsigned char, int or unsigned int)");
  }
  const char *ri = str_or(c, "ResampleInterpolator", "FinalBSplineInterpolator");
  if (strcmp(ri, "FinalBSplineInterpolator") == 0 || strcmp(ri, "FinalBSplineInterpolatorFloat") == 0) {
    s = gr_param_get_int(c->m, "FinalBSplineInterpolationOrder", 0, &o->final_bspline_order);
    if (s != GR_OK) return s;
    if (o->final_bspline_order < 0 || o->final_bspline_order > 5)
      return gr_error(GR_ERR_PARAM, "%s: FinalBSplineInterpolationOrder: %d must be in 0..5", c->origin,
                      o->final_bspline_order);
  } else if (strcmp(ri, "FinalLinearInterpolator") == 0 || strcmp(ri, "FinalNearestNeighborInterpolator") == 0) {
    /* Written back as FinalBSplineInterpolator of order 1 / 0: the same
     * interpolation, and the only resample interpolator Debian's transformix has. */
    o->final_bspline_order = ri[5] == 'L' ? 1 : 0;
    if (has(c, "FinalBSplineInterpolationOrder"))
      warn_key(c, "FinalBSplineInterpolationOrder", "ResampleInterpolator fixes the order");
  } else if (strcmp(ri, "FinalRayCastInterpolator") == 0 || strcmp(ri, "FinalReducedDimensionBSplineInterpolator") == 0) {
    return bad(c, GR_ERR_UNSUPPORTED, "ResampleInterpolator", ri, "is not supported by GigaReg");
  } else {
    return bad(c, GR_ERR_PARAM, "ResampleInterpolator", ri, "is not an elastix resample interpolator");
  }
  const char *rs = str_or(c, "Resampler", "DefaultResampler");
  if (strcmp(rs, "DefaultResampler") != 0 && strcmp(rs, "OpenCLResampler") != 0)
    return bad(c, GR_ERR_PARAM, "Resampler", rs, "is not an elastix resampler");
  return GR_OK;
}

/* ---- keys honoured only for particular values ------------------------------------ */

static void map_conditional(gr_map_ctx *c) {
  struct { const char *key, *honoured, *why; } kv[] = {
      {"UseDirectionCosines", "true", "GigaReg always uses the direction cosines of the images"},
      {"HowToCombineTransforms", "Compose", "GigaReg always composes stages"},
      {"FixedInternalImagePixelType", "float", "GigaReg computes in float"},
      {"MovingInternalImagePixelType", "float", "GigaReg computes in float"},
      {"ComputeZYX", "false", "GigaReg's Euler stage uses ComputeZYX \"false\" (elastix's default)"},
  };
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; ++i) {
    if (!has(c, kv[i].key)) continue;
    if (strcmp(str_or(c, kv[i].key, ""), kv[i].honoured) != 0) warn_key(c, kv[i].key, kv[i].why);
  }
  /* The moving image is sampled trilinearly while registering: elastix's
   * default B-spline interpolator of order 1 is exactly that. */
  if (has(c, "Interpolator") || has(c, "BSplineInterpolationOrder")) {
    const char *ip = str_or(c, "Interpolator", "BSplineInterpolator"); /* elastix's default */
    const int bspline = strcmp(ip, "BSplineInterpolator") == 0 || strcmp(ip, "BSplineInterpolatorFloat") == 0;
    int order = 1;
    if (bspline && gr_param_get_int(c->m, "BSplineInterpolationOrder", 0, &order) != GR_OK) order = -1;
    if (has(c, "Interpolator") && !(strcmp(ip, "LinearInterpolator") == 0 || (bspline && order == 1)))
      warn_key(c, "Interpolator", "GigaReg samples the moving image trilinearly while registering");
    if (bspline && order != 1 && has(c, "BSplineInterpolationOrder"))
      warn_key(c, "BSplineInterpolationOrder", "GigaReg samples the moving image trilinearly while registering");
  }
}

/* ---- the final sweep ------------------------------------------------------------- */

typedef struct gr_key_reason {
  const char *key;
  const char *why;
} gr_key_reason;

#define WHY_SAMPLER "GigaReg evaluates metrics on all voxels"
#define WHY_STEP "step-length semantics differ; GigaReg's default learning rate is used (set GigaRegLearningRate to change it)"
#define WHY_OPT "GigaReg's optimizers have no such setting"
#define WHY_BSPLINE "only meaningful for B-spline transforms"
#define WHY_OUTPUT "GigaReg does not write intermediate results"
#define WHY_MI "only meaningful for mutual information metrics"
#define WHY_MASK "GigaReg uses masks as given"
#define WHY_TP "a TransformParameters key (give such a file to -t0 or to transformix -tp, not to -p)"

static const gr_key_reason gr_reasons[] = {
    {"ImageSampler", WHY_SAMPLER}, {"NumberOfSpatialSamples", WHY_SAMPLER}, {"NewSamplesEveryIteration", WHY_SAMPLER},
    {"UseRandomSampleRegion", WHY_SAMPLER}, {"SampleRegionSize", WHY_SAMPLER}, {"SampleGridSpacing", WHY_SAMPLER},
    {"CheckNumberOfSamples", WHY_SAMPLER}, {"MaximumNumberOfSamplingAttempts", WHY_SAMPLER},
    {"RequiredRatioOfValidSamples", WHY_SAMPLER}, {"FixedImageBSplineInterpolationOrder", WHY_SAMPLER},
    {"NumberOfSamplesForExactGradient", WHY_SAMPLER}, {"ExactMetricSampleGridSpacing", WHY_SAMPLER},
    {"ShowExactMetricValue", WHY_SAMPLER}, {"ExactMetricEveryXIterations", WHY_SAMPLER},
    {"MaximumStepLength", WHY_STEP}, {"MinimumStepLength", WHY_STEP}, {"StepLength", WHY_STEP},
    {"MaximumStepLengthRatio", WHY_STEP}, {"RelaxationFactor", WHY_STEP}, {"SP_a", WHY_STEP}, {"SP_A", WHY_STEP},
    {"SP_alpha", WHY_STEP}, {"SP_c", WHY_STEP}, {"SP_gamma", WHY_STEP}, {"SP_beta", WHY_STEP},
    {"AutomaticParameterEstimation", WHY_STEP}, {"ASGDParameterEstimationMethod", WHY_STEP},
    {"MaximumDisplacementEstimationMethod", WHY_STEP}, {"NumberOfGradientMeasurements", WHY_STEP},
    {"NumberOfJacobianMeasurements", WHY_STEP}, {"NumberOfBandStructureSamples", WHY_STEP},
    {"NoiseCompensation", WHY_STEP}, {"UseAdaptiveStepSizes", WHY_STEP}, {"SigmoidInitialTime", WHY_STEP},
    {"SigmoidMax", WHY_STEP}, {"SigmoidMin", WHY_STEP}, {"SigmoidScale", WHY_STEP}, {"SigmoidScaleFactor", WHY_STEP},
    {"UseConstantStep", WHY_STEP}, {"StepSizeStrategy", WHY_STEP},
    {"AutomaticScalesEstimation", "GigaReg scales rigid/affine parameters by the image radius itself"},
    {"Scales", "GigaReg scales rigid/affine parameters by the image radius itself"},
    {"UseJacobianPreconditioning", WHY_OPT}, {"FiniteDifferenceDerivative", WHY_OPT},
    {"MinimumGradientMagnitude", WHY_OPT}, {"GradientMagnitudeTolerance", WHY_OPT}, {"ValueTolerance", WHY_OPT},
    {"StepTolerance", WHY_OPT}, {"LBFGSUpdateAccuracy", WHY_OPT}, {"LineSearchValueTolerance", WHY_OPT},
    {"LineSearchGradientTolerance", WHY_OPT}, {"MaximumNumberOfLineSearchIterations", WHY_OPT},
    {"StopIfWolfeNotSatisfied", WHY_OPT}, {"GenerateLineSearchIterations", WHY_OPT},
    {"NumberOfSamplesForSelfHessian", WHY_OPT}, {"UseCruzAcceleration", WHY_OPT},
    {"Interpolator", "GigaReg samples the moving image trilinearly while registering"},
    {"BSplineInterpolationOrder", "GigaReg samples the moving image trilinearly while registering"},
    {"ErodeMask", WHY_MASK}, {"ErodeFixedMask", WHY_MASK}, {"ErodeMovingMask", WHY_MASK},
    {"FinalGridSpacingInPhysicalUnits", WHY_BSPLINE}, {"FinalGridSpacingInVoxels", WHY_BSPLINE},
    {"FinalGridSpacing", WHY_BSPLINE},
    {"GridSpacingSchedule", "GigaReg's dense field has no control-point grid to refine"},
    {"BSplineTransformSplineOrder", WHY_BSPLINE}, {"UseCyclicTransform", WHY_BSPLINE},
    {"PassiveEdgeWidth", WHY_BSPLINE}, {"UpsampleGridOption", WHY_BSPLINE},
    {"AutomaticTransformInitialization", "only meaningful for the first linear stage"},
    {"AutomaticTransformInitializationMethod", "only meaningful for the first linear stage"},
    {"NumberOfHistogramBins", WHY_MI}, {"NumberOfFixedHistogramBins", WHY_MI}, {"NumberOfMovingHistogramBins", WHY_MI},
    {"FixedKernelBSplineOrder", "GigaReg's Mattes MI uses a cubic B-spline Parzen window"},
    {"MovingKernelBSplineOrder", "GigaReg's Mattes MI uses a cubic B-spline Parzen window"},
    {"FixedLimitRangeRatio", "GigaReg's MI uses the full intensity range"},
    {"MovingLimitRangeRatio", "GigaReg's MI uses the full intensity range"},
    {"UseFastAndLowMemoryVersion", "GigaReg's MI has one implementation"},
    {"UseDifferentiableOverlap", "GigaReg's MI has one implementation"},
    {"SubtractMean", "GigaReg's NCC always subtracts the mean"},
    {"UseNormalization", "GigaReg normalises intensities itself"},
    {"MovingImageDerivativeScales", "GigaReg optimises all axes"},
    {"UseRelativeWeights", "GigaReg optimises a single metric"},
    {"UseMultiThreadingForMetrics", "GigaReg's backends are always parallel"},
    {"ImagePyramidUseShrinkImageFilter", "GigaReg resamples its pyramids"},
    {"ComputePyramidImagesPerResolution", "GigaReg builds one pyramid level at a time"},
    {"WritePyramidImagesAfterEachResolution", WHY_OUTPUT}, {"WriteResultImageAfterEachResolution", WHY_OUTPUT},
    {"WriteResultImageAfterEachIteration", WHY_OUTPUT}, {"WriteTransformParametersEachIteration", WHY_OUTPUT},
    {"WriteTransformParametersEachResolution", WHY_OUTPUT}, {"WriteIterationInfo", WHY_OUTPUT},
    {"ShowMetricValues", WHY_OUTPUT}, {"WriteFinalTransformParameters", WHY_OUTPUT},
    {"DefaultOutputPrecision", "GigaReg writes numbers with full precision"},
    {"UseBinaryFormatForTransformationParameters", "GigaReg writes parameters as text"},
    {"ResultImageName", "GigaReg names the result image result.<ResultImageFormat>"},
    {"RandomSeed", "GigaReg's full-voxel metrics are deterministic"},
    {"CenterOfRotation", "GigaReg puts the centre of rotation at the fixed image centre"},
    {"CenterOfRotationPoint", "GigaReg puts the centre of rotation at the fixed image centre"},
    {"ComputeZYX", "GigaReg's Euler stage uses ComputeZYX \"false\" (elastix's default)"},
    {"OpenCLDeviceType", "GigaReg does not use OpenCL"}, {"OpenCLDeviceID", "GigaReg does not use OpenCL"},
    {"OpenCLResamplerUseOpenCL", "GigaReg does not use OpenCL"},
    {"OpenCLFixedGenericImagePyramidUseOpenCL", "GigaReg does not use OpenCL"},
    {"OpenCLMovingGenericImagePyramidUseOpenCL", "GigaReg does not use OpenCL"},
    {"GigaRegLNCCRadius", "only used with Metric \"GigaRegLocalNormalizedCorrelation\""},
    {"GigaRegFieldSigma", "only used by deformable stages"},
    {"GigaRegAdamMoments", "only used by deformable stages"},
    {"GigaRegImageStorage", "only used by deformable stages"},
    {"NumberOfParameters", WHY_TP}, {"TransformParameters", WHY_TP}, {"InitialTransformParametersFileName", WHY_TP},
    {"InitialTransformParameterFileName", WHY_TP}, {"Size", WHY_TP}, {"Index", WHY_TP}, {"Spacing", WHY_TP},
    {"Origin", WHY_TP}, {"Direction", WHY_TP}, {"DeformationFieldFileName", WHY_TP},
    {"DeformationFieldInterpolationOrder", WHY_TP},
};

static const char *reason_for(const char *key) {
  for (size_t i = 0; i < sizeof gr_reasons / sizeof gr_reasons[0]; ++i)
    if (strcmp(key, gr_reasons[i].key) == 0) return gr_reasons[i].why;
  if (strncmp(key, "Metric", 6) == 0 && key[6] >= '0' && key[6] <= '9')
    return "GigaReg optimises a single metric (multi-metric settings are not used)";
  if (strncmp(key, "GigaReg", 7) == 0) return "not a GigaReg key (misspelt?)";
  return "not a key GigaReg knows";
}

static void sweep_unused(const gr_map_ctx *c) {
  const int n = gr_param_key_count(c->m);
  for (int i = 0; i < n; ++i) {
    const char *k = gr_param_key_at(c->m, i);
    if (!gr_param_was_used(c->m, k)) warn_key(c, k, reason_for(k));
  }
}

/* GigaRegNumberOfShards: split the run into N Grid Parallel shards (threads of
 * one process; under mpirun the rank count decides instead). */
static gr_status map_parallel(gr_map_ctx *c) {
  if (!has(c, "GigaRegNumberOfShards")) return GR_OK;
  int n = 0;
  gr_status s = gr_param_get_int(c->m, "GigaRegNumberOfShards", 0, &n);
  if (s != GR_OK) return s;
  if (n < 1 || n > 4096)
    return gr_error(GR_ERR_PARAM, "%s: GigaRegNumberOfShards: %d must be in 1..4096", c->origin, n);
  c->st->shards = n;
  return GR_OK;
}

/* ---- entry point ----------------------------------------------------------------- */

gr_status gr_stage_config_from_params(const gr_param_map *m, const char *origin, gr_stage_config *stage,
                                      gr_output_config *out, FILE *warn) {
  if (!m || !stage || !out) return gr_error(GR_ERR_INVALID_ARG, "gr_stage_config_from_params: missing argument");
  gr_map_ctx c = {m, origin ? origin : "<parameters>", warn, stage, out, 0};
  gr_stage_kind kind = GR_STAGE_RIGID;
  const char *note = NULL, *tname = NULL;
  gr_status s = map_transform(&c, &kind, &note, &tname);
  if (s != GR_OK) return s;
  gr_stage_config_defaults(kind, stage);
  gr_output_config_defaults(out);
  c.deformable = (kind == GR_STAGE_GREEDY || kind == GR_STAGE_SYN);
  if (note) warnf(&c, "Transform \"%s\" %s", tname, note);
  if (gr_param_count(m, "Transform") > 1) warnf(&c, "key 'Transform' has several values; GigaReg uses the first");

  s = map_registration(&c);
  if (s == GR_OK) s = map_levels(&c);
  if (s == GR_OK) s = map_pyramid(&c);
  if (s == GR_OK) s = map_metric(&c);
  if (s == GR_OK) s = map_iterations(&c);
  if (s == GR_OK) s = map_optimizer(&c);
  if (s == GR_OK) s = map_init(&c);
  if (s == GR_OK) s = map_deformable(&c);
  if (s == GR_OK) s = map_output(&c);
  if (s == GR_OK) s = map_parallel(&c);
  if (s != GR_OK) return s;
  map_conditional(&c);
  sweep_unused(&c);
  return GR_OK;
}
