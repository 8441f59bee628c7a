/* elastix parameter map -> stage config: mapping of real-world files, one
 * named warning per ignored key, impossible values rejected with the key and
 * value in the message. */
#include "gr_test.h"
#include "gigareg/param_map.h"

typedef struct mapped {
  gr_status status;
  gr_stage_config st;
  gr_output_config oc;
  char warnings[16384];
  int nwarn;
  int all_used; /* every key used or warned */
} mapped;

static void run_map(gr_param_map *m, const char *origin, mapped *r) {
  memset(r, 0, sizeof *r);
  FILE *w = tmpfile();
  GR_CHECK(w != NULL, "tmpfile");
  r->status = gr_stage_config_from_params(m, origin, &r->st, &r->oc, w);
  if (w) {
    rewind(w);
    size_t n = fread(r->warnings, 1, sizeof r->warnings - 1, w);
    r->warnings[n] = '\0';
    fclose(w);
  }
  for (const char *p = r->warnings; (p = strstr(p, "warning: ")) != NULL; ++p) r->nwarn++;
  r->all_used = 1;
  for (int i = 0; i < gr_param_key_count(m); ++i)
    if (!gr_param_was_used(m, gr_param_key_at(m, i))) r->all_used = 0;
}

static gr_param_map *load(const char *name) {
  char p[1024];
  gr_test_path(p, sizeof p, GR_TEST_DATA_DIR "/params", name);
  gr_param_map *m = NULL;
  GR_CHECK_OK(gr_param_map_read(p, &m));
  return m;
}

static void map_file(const char *name, mapped *r) {
  gr_param_map *m = load(name);
  if (!m) {
    memset(r, 0, sizeof *r);
    r->status = GR_ERR_IO;
    return;
  }
  run_map(m, name, r);
  GR_CHECK(r->all_used, "%s: a key was neither honoured nor warned about", name);
  gr_param_map_destroy(m);
}

static void map_text(const char *text, mapped *r) {
  gr_param_map *m = NULL;
  GR_CHECK_OK(gr_param_map_parse(text, strlen(text), "p.txt", &m));
  if (!m) {
    memset(r, 0, sizeof *r);
    r->status = GR_ERR_IO;
    return;
  }
  run_map(m, "p.txt", r);
  if (r->status == GR_OK) GR_CHECK(r->all_used, "a key was neither honoured nor warned about in '%s'", text);
  gr_param_map_destroy(m);
}

#define HAS_WARNING(r, text) GR_CHECK(strstr((r)->warnings, (text)) != NULL, "no warning '%s' in:\n%s", text, (r)->warnings)
#define NO_WARNING(r, text) GR_CHECK(strstr((r)->warnings, (text)) == NULL, "unexpected warning '%s' in:\n%s", text, (r)->warnings)

static void test_affine(void) {
  mapped r;
  map_file("Par0000affine.txt", &r);
  GR_CHECK_OK(r.status);
  if (r.status != GR_OK) return;
  GR_CHECK(r.st.kind == GR_STAGE_AFFINE, "kind %d", r.st.kind);
  GR_CHECK(r.st.metric.kind == GR_METRIC_MI && r.st.metric.mi_bins == 32, "metric %d bins %d", r.st.metric.kind, r.st.metric.mi_bins);
  GR_CHECK(r.st.levels == 4, "levels %d", r.st.levels);
  const double shrink[4] = {8, 4, 2, 1};
  for (int l = 0; l < 4; ++l) {
    GR_CHECK_NEAR(r.st.shrink[l], shrink[l], 0);
    GR_CHECK_NEAR(r.st.sigma_vox[l], 0.5 * shrink[l], 0); /* recursive pyramid */
    GR_CHECK(r.st.iterations[l] == 250, "iterations[%d] %d", l, r.st.iterations[l]);
  }
  GR_CHECK(r.st.init == GR_INIT_GEOMETRIC_CENTER, "init %d", r.st.init);
  GR_CHECK(r.st.optimizer == GR_OPT_GD, "ASGD on a linear stage -> the default GD");
  GR_CHECK(r.oc.final_bspline_order == 3 && r.oc.write_result_image == 1 && r.oc.compress_result_image == 0, "output");
  GR_CHECK(strcmp(r.oc.result_format, "mhd") == 0 && r.oc.result_pixel_type == GR_PIXEL_F32, "output defaults");
  HAS_WARNING(&r, "warning: Par0000affine.txt: key 'ImageSampler' (\"RandomCoordinate\") ignored: GigaReg evaluates metrics on all voxels");
  HAS_WARNING(&r, "key 'NumberOfSpatialSamples' (2000) ignored: GigaReg evaluates metrics on all voxels");
  HAS_WARNING(&r, "key 'SP_a' (1000.0) ignored: step-length semantics differ");
  HAS_WARNING(&r, "key 'AutomaticScalesEstimation' (\"true\") ignored");
  HAS_WARNING(&r, "key 'ErodeMask' (\"false\") ignored");
  /* honoured keys are not warned about */
  NO_WARNING(&r, "'NumberOfResolutions'");
  NO_WARNING(&r, "'Interpolator'"); /* BSpline order 1 = linear */
  NO_WARNING(&r, "'BSplineInterpolationOrder'");
  NO_WARNING(&r, "'FixedInternalImagePixelType'");
  NO_WARNING(&r, "'HowToCombineTransforms'");
  NO_WARNING(&r, "'FinalBSplineInterpolationOrder'");
  NO_WARNING(&r, "'NumberOfHistogramBins'");
  NO_WARNING(&r, "'Optimizer'");
  /* one line per warned key: 42 keys, 23 of them honoured */
  GR_CHECK(r.nwarn == 19, "%d warnings:\n%s", r.nwarn, r.warnings);
}

static void test_bspline(void) {
  mapped r;
  map_file("Par0000bspline.txt", &r);
  GR_CHECK_OK(r.status);
  if (r.status != GR_OK) return;
  GR_CHECK(r.st.kind == GR_STAGE_GREEDY, "kind %d", r.st.kind);
  GR_CHECK(r.st.metric.kind == GR_METRIC_MI, "metric %d", r.st.metric.kind);
  GR_CHECK(r.st.levels == 4 && r.st.shrink[0] == 8 && r.st.shrink[3] == 1, "schedule");
  GR_CHECK_NEAR(r.st.sigma_vox[3], 0.5, 0); /* smoothing pyramid smooths the last level too */
  GR_CHECK(r.st.iterations[0] == 500 && r.st.iterations[3] == 500, "iterations");
  GR_CHECK(r.st.optimizer == GR_OPT_ADAM, "deformable optimizer");
  GR_CHECK_NEAR(r.st.final_grid_spacing_mm, 16, 0);
  GR_CHECK(strcmp(r.oc.result_format, "nii.gz") == 0 && r.oc.result_pixel_type == GR_PIXEL_I16, "output");
  HAS_WARNING(&r, "Transform \"BSplineTransform\" is run as GigaReg's dense greedy deformable stage; FinalGridSpacingInPhysicalUnits sets the field smoothing");
  HAS_WARNING(&r, "key 'GridSpacingSchedule' (8.0 4.0 2.0 1.0) ignored");
  NO_WARNING(&r, "'FinalGridSpacingInPhysicalUnits'");
  NO_WARNING(&r, "'ImagePyramidSchedule'");
  /* mm -> voxels once the fixed image is known */
  gr_geometry g;
  gr_geometry_identity(&g, 10, 10, 10);
  gr_stage_config st = r.st;
  gr_stage_config_resolve_grid_spacing(&st, &g);
  GR_CHECK_NEAR(st.field_sigma_vox, 4.0, 1e-12);
  g.spacing[0] = g.spacing[1] = g.spacing[2] = 8.0;
  st = r.st;
  gr_stage_config_resolve_grid_spacing(&st, &g);
  GR_CHECK_NEAR(st.field_sigma_vox, 0.5, 1e-12); /* floor */
}

static void test_multimetric(void) {
  mapped r;
  map_file("Par_bspline_multimetric.txt", &r);
  GR_CHECK_OK(r.status);
  if (r.status != GR_OK) return;
  GR_CHECK(r.st.kind == GR_STAGE_GREEDY && r.st.metric.kind == GR_METRIC_MI, "kind/metric");
  GR_CHECK(r.st.metric.mi_bins == 64, "finest level's bins: %d", r.st.metric.mi_bins);
  GR_CHECK_NEAR(r.st.field_sigma_vox, 2.0, 0); /* 8 voxels / 4 */
  GR_CHECK(r.st.iterations[0] == 1000 && r.st.iterations[2] == 2000, "iterations");
  HAS_WARNING(&r, "Metric \"TransformBendingEnergyPenalty\" ignored");
  HAS_WARNING(&r, "key 'Metric1Weight' (50.0) ignored: GigaReg optimises a single metric");
  HAS_WARNING(&r, "bins vary per resolution");
  NO_WARNING(&r, "'Registration'");
}

static void test_rigid(void) {
  mapped r;
  map_file("Par_rigid_euler.txt", &r);
  GR_CHECK_OK(r.status);
  if (r.status != GR_OK) return;
  GR_CHECK(r.st.kind == GR_STAGE_RIGID && r.st.metric.kind == GR_METRIC_NCC, "kind/metric");
  GR_CHECK(r.st.init == GR_INIT_CENTER_OF_MASS, "init %d", r.st.init);
  GR_CHECK(r.st.optimizer == GR_OPT_GD, "optimizer");
  GR_CHECK(r.st.iterations[0] == 300 && r.st.iterations[1] == 200 && r.st.iterations[2] == 100, "iterations");
  GR_CHECK(r.st.shrink[0] == 4 && r.st.shrink[2] == 1, "default schedule");
  GR_CHECK(r.oc.final_bspline_order == 1 && r.oc.write_result_image == 0, "output");
  GR_CHECK_NEAR(r.oc.default_pixel_value, -1000, 0);
  GR_CHECK(strcmp(r.oc.result_format, "mha") == 0, "format");
  HAS_WARNING(&r, "key 'MaximumStepLength' (2.0 1.0 0.5) ignored: step-length semantics differ; GigaReg's default learning rate is used (set GigaRegLearningRate to change it)");
  HAS_WARNING(&r, "key 'ImageSampler' (\"Full\") ignored");
  NO_WARNING(&r, "'Interpolator'");
}

static void test_gigareg_greedy(void) {
  mapped r;
  map_file("Par_gigareg_greedy.txt", &r);
  GR_CHECK_OK(r.status);
  if (r.status != GR_OK) return;
  GR_CHECK(r.st.kind == GR_STAGE_GREEDY && r.st.metric.kind == GR_METRIC_LNCC && r.st.metric.lncc_radius == 3, "lncc");
  GR_CHECK_NEAR(r.st.sigma_vox[0], 2.0, 0);
  GR_CHECK_NEAR(r.st.sigma_vox[2], 0.0, 0);
  GR_CHECK_NEAR(r.st.learning_rate[1], 0.25, 0);
  GR_CHECK_NEAR(r.st.field_sigma_vox, 0.7, 0);
  GR_CHECK(r.nwarn == 0, "no warnings expected:\n%s", r.warnings);
}

static void test_defaults_and_variants(void) {
  mapped r;
  map_text("(Transform \"AffineTransform\")", &r);
  GR_CHECK_OK(r.status);
  GR_CHECK(r.st.metric.kind == GR_METRIC_MI && r.st.levels == 3 && r.st.init == GR_INIT_NONE, "linear defaults");
  GR_CHECK(r.st.shrink[0] == 4 && r.st.sigma_vox[2] == 0.5, "elastix default pyramid");
  GR_CHECK(r.nwarn == 0, "warnings:\n%s", r.warnings);
  map_text("(Transform \"BSplineTransform\")(NumberOfResolutions 1)", &r);
  GR_CHECK_OK(r.status);
  GR_CHECK(r.st.metric.kind == GR_METRIC_LNCC && r.st.levels == 1 && r.st.iterations[0] == 50, "deformable defaults");
  GR_CHECK(r.st.shrink[0] == 1, "one level");
  GR_CHECK(r.st.adam_moments_bf16 == 0, "float Adam moments by default");
  map_text("(Transform \"GigaRegGreedyTransform\")(GigaRegAdamMoments \"bfloat16\")", &r);
  GR_CHECK_OK(r.status);
  GR_CHECK(r.st.adam_moments_bf16 == 1 && r.nwarn == 0, "GigaRegAdamMoments bfloat16");
  map_text("(Transform \"AffineTransform\")(GigaRegAdamMoments \"bfloat16\")", &r);
  GR_CHECK_OK(r.status);
  HAS_WARNING(&r, "key 'GigaRegAdamMoments' (\"bfloat16\") ignored: only used by deformable stages");
  GR_CHECK(r.st.image_u16 == 0, "float images by default");
  map_text("(Transform \"GigaRegGreedyTransform\")(GigaRegImageStorage \"uint16\")", &r);
  GR_CHECK_OK(r.status);
  GR_CHECK(r.st.image_u16 == 1 && r.nwarn == 0, "GigaRegImageStorage uint16");
  map_text("(Transform \"GigaRegGreedyTransform\")(GigaRegImageStorage \"float\")", &r);
  GR_CHECK(r.status == GR_OK && r.st.image_u16 == 0, "GigaRegImageStorage float");
  map_text("(Transform \"EulerTransform\")(GigaRegImageStorage \"uint16\")", &r);
  GR_CHECK_OK(r.status);
  HAS_WARNING(&r, "key 'GigaRegImageStorage' (\"uint16\") ignored: only used by deformable stages");
  map_text("(Transform \"GigaRegSyNTransform\")(NumberOfResolutions 5)", &r);
  GR_CHECK_OK(r.status);
  GR_CHECK(r.st.kind == GR_STAGE_SYN && r.st.shrink[0] == 16 && r.st.iterations[0] == 200 && r.st.iterations[4] == 50,
           "5 levels aligned at the finest");
  map_text("(Transform \"SimilarityTransform\")(Metric \"NormalizedMutualInformation\")", &r);
  GR_CHECK_OK(r.status);
  GR_CHECK(r.st.kind == GR_STAGE_AFFINE && r.st.metric.kind == GR_METRIC_MI, "similarity");
  HAS_WARNING(&r, "Transform \"SimilarityTransform\" is run as an AffineTransform");
  HAS_WARNING(&r, "Metric \"NormalizedMutualInformation\" is optimised as Mattes mutual information");
  map_text("(Transform \"TranslationTransform\")(Metric \"AdvancedMeanSquares\")(FooBar 1)(GigaRegLNCCRadius 4)", &r);
  GR_CHECK_OK(r.status);
  GR_CHECK(r.st.kind == GR_STAGE_TRANSLATION && r.st.metric.kind == GR_METRIC_MSE, "translation mse");
  HAS_WARNING(&r, "warning: p.txt: key 'FooBar' (1) ignored: not a key GigaReg knows");
  HAS_WARNING(&r, "key 'GigaRegLNCCRadius' (4) ignored: only used with Metric \"GigaRegLocalNormalizedCorrelation\"");
  map_text("(Transform \"EulerTransform\")(ResampleInterpolator \"FinalNearestNeighborInterpolator\")"
           "(ImagePyramidSchedule 4 4 2 2 2 1 1 1 1)(FixedImagePyramid \"FixedShrinkingImagePyramid\")"
           "(MovingImagePyramid \"MovingShrinkingImagePyramid\")(UseDirectionCosines \"false\")"
           "(Optimizer \"QuasiNewtonLBFGS\")(AutomaticTransformInitialization \"true\")",
           &r);
  GR_CHECK_OK(r.status);
  GR_CHECK(r.oc.final_bspline_order == 0, "nearest -> order 0");
  GR_CHECK(r.st.shrink[0] == 4 && r.st.shrink[1] == 2 && r.st.sigma_vox[0] == 0.0, "shrinking pyramid");
  GR_CHECK(r.st.init == GR_INIT_GEOMETRIC_CENTER, "init default method");
  HAS_WARNING(&r, "per-axis factors differ");
  HAS_WARNING(&r, "key 'UseDirectionCosines' (\"false\") ignored");
  HAS_WARNING(&r, "Optimizer \"QuasiNewtonLBFGS\" is run as GigaReg's gradient descent");
  /* warnings off */
  gr_param_map *m = NULL;
  const char *t = "(Transform \"AffineTransform\")(ImageSampler \"Random\")";
  GR_CHECK_OK(gr_param_map_parse(t, strlen(t), "q", &m));
  gr_stage_config st;
  gr_output_config oc;
  GR_CHECK_OK(gr_stage_config_from_params(m, "q", &st, &oc, NULL));
  gr_param_map_destroy(m);
}

static void expect_fail(const char *text, gr_status code, const char *want) {
  mapped r;
  map_text(text, &r);
  GR_CHECK(r.status == code, "'%s': status %d, want %d (%s)", text, (int)r.status, (int)code, gr_last_error());
  GR_CHECK(strstr(gr_last_error(), want) != NULL, "'%s': message '%s' lacks '%s'", text, gr_last_error(), want);
}

static void test_impossible(void) {
  expect_fail("(Metric \"AdvancedMeanSquares\")", GR_ERR_PARAM, "p.txt: missing key 'Transform'");
  expect_fail("(Transform \"EulerTransfrom\")", GR_ERR_PARAM, "p.txt: Transform: 'EulerTransfrom' is not an elastix or GigaReg transform");
  expect_fail("(Transform \"SplineKernelTransform\")", GR_ERR_UNSUPPORTED, "Transform: 'SplineKernelTransform'");
  expect_fail("(Transform \"AffineTransform\")(NumberOfResolutions 0)", GR_ERR_PARAM, "p.txt: NumberOfResolutions: 0 must be in 1..8");
  expect_fail("(Transform \"AffineTransform\")(NumberOfResolutions 9)", GR_ERR_PARAM, "NumberOfResolutions: 9");
  expect_fail("(Transform \"AffineTransform\")(NumberOfResolutions 2.5)", GR_ERR_PARAM, "NumberOfResolutions: value '2.5' is not an integer");
  expect_fail("(Transform \"AffineTransform\")(NumberOfHistogramBins 2)", GR_ERR_PARAM, "NumberOfHistogramBins: 2 must be in 4..1024");
  expect_fail("(Transform \"AffineTransform\")(MaximumNumberOfIterations 100 -5)", GR_ERR_PARAM,
              "p.txt: MaximumNumberOfIterations: -5 must be >= 0");
  expect_fail("(Transform \"AffineTransform\")(MaximumNumberOfIterations abc)", GR_ERR_PARAM,
              "MaximumNumberOfIterations: value 'abc' is not an integer");
  expect_fail("(Transform \"AffineTransform\")(MaximumNumberOfIterations 10.5)", GR_ERR_PARAM,
              "MaximumNumberOfIterations: value '10.5' is not an integer");
  expect_fail("(Transform \"AffineTransform\")(NumberOfResolutions 2)(ImagePyramidSchedule 2 2 2 0 0 0)", GR_ERR_PARAM,
              "ImagePyramidSchedule: factor 0 at resolution 1 must be >= 1");
  expect_fail("(Transform \"AffineTransform\")(NumberOfResolutions 2)(ImagePyramidSchedule 2 2 2 -1 1 1)", GR_ERR_PARAM,
              "factor -1");
  expect_fail("(Transform \"AffineTransform\")(NumberOfResolutions 2)(ImagePyramidSchedule 4 2 1)", GR_ERR_PARAM,
              "ImagePyramidSchedule has 3 values; NumberOfResolutions 2 needs 6");
  expect_fail("(Transform \"BSplineTransform\")(FinalGridSpacingInPhysicalUnits 0)", GR_ERR_PARAM,
              "FinalGridSpacingInPhysicalUnits: 0 must be > 0");
  expect_fail("(Transform \"BSplineTransform\")(FinalGridSpacingInVoxels 8 -2 8)", GR_ERR_PARAM,
              "FinalGridSpacingInVoxels: -2 must be > 0");
  expect_fail("(Transform \"AffineTransform\")(Metric \"MutualInfo\")", GR_ERR_PARAM, "Metric: 'MutualInfo' is not an elastix or GigaReg metric");
  expect_fail("(Transform \"AffineTransform\")(Metric \"GradientDifference\")", GR_ERR_UNSUPPORTED, "Metric: 'GradientDifference' is not supported");
  expect_fail("(Transform \"AffineTransform\")(Optimizer \"Fast\")", GR_ERR_PARAM, "Optimizer: 'Fast'");
  expect_fail("(Transform \"AffineTransform\")(ResultImageFormat \"png\")", GR_ERR_PARAM, "ResultImageFormat: 'png' is not supported");
  expect_fail("(Transform \"AffineTransform\")(ResultImagePixelType \"long\")", GR_ERR_PARAM, "ResultImagePixelType: 'long'");
  expect_fail("(Transform \"AffineTransform\")(FinalBSplineInterpolationOrder 7)", GR_ERR_PARAM,
              "FinalBSplineInterpolationOrder: 7 must be in 0..5");
  expect_fail("(Transform \"AffineTransform\")(WriteResultImage \"yes\")", GR_ERR_PARAM, "WriteResultImage: value 'yes' is not a boolean");
  expect_fail("(Transform \"AffineTransform\")(FixedImageDimension 2)", GR_ERR_UNSUPPORTED, "FixedImageDimension: 2");
  expect_fail("(Transform \"AffineTransform\")(Registration \"Foo\")", GR_ERR_PARAM, "Registration: 'Foo'");
  expect_fail("(Transform \"AffineTransform\")(FixedImagePyramid \"FixedFooPyramid\")", GR_ERR_PARAM, "FixedImagePyramid: 'FixedFooPyramid'");
  expect_fail("(Transform \"GigaRegGreedyTransform\")(Metric \"GigaRegLocalNormalizedCorrelation\")(GigaRegLNCCRadius 0)",
              GR_ERR_PARAM, "GigaRegLNCCRadius: 0 must be in 1..32");
  expect_fail("(Transform \"AffineTransform\")(GigaRegSmoothingSigmas 1 -1 0)", GR_ERR_PARAM, "GigaRegSmoothingSigmas: -1 must be >= 0");
  expect_fail("(Transform \"GigaRegSyNTransform\")(GigaRegAdamMoments \"half\")", GR_ERR_PARAM,
              "GigaRegAdamMoments: 'half' is not \"float\" or \"bfloat16\"");
  expect_fail("(Transform \"GigaRegGreedyTransform\")(GigaRegImageStorage \"fp16\")", GR_ERR_PARAM,
              "GigaRegImageStorage: 'fp16' is not \"float\" or \"uint16\"");
  expect_fail("(Transform \"AffineTransform\")(GigaRegLearningRate 0)", GR_ERR_PARAM, "GigaRegLearningRate: 0 must be > 0");
  expect_fail("(Transform \"AffineTransform\")(AutomaticTransformInitializationMethod \"Middle\")", GR_ERR_PARAM,
              "AutomaticTransformInitializationMethod: 'Middle'");
}

int main(void) {
  test_affine();
  test_bspline();
  test_multimetric();
  test_rigid();
  test_gigareg_greedy();
  test_defaults_and_variants();
  test_impossible();
  GR_TEST_RETURN();
}
