# Tests of the elastix components (label "elastix"); included by cmake/GigaRegElastix.cmake
# once elastix with GigaReg components is configured. They run the built elastix and an
# elastix 5.0.1 transformix (Debian's /usr/bin/transformix) on chris_t1 / chris_PD.
add_executable(elx_tool ${CMAKE_CURRENT_LIST_DIR}/elx_tool.c)
target_link_libraries(elx_tool PRIVATE gigareg)

find_program(GIGAREG_TRANSFORMIX transformix)
if(NOT GIGAREG_TRANSFORMIX)
  message(STATUS "GigaReg: elastix component tests need transformix (Debian package elastix): not registered")
  return()
endif()

set(_elx_dir ${CMAKE_CURRENT_LIST_DIR})
set(_elx_work ${CMAKE_BINARY_DIR}/elastix-tests)
set(_elx_env
  ELX=${GIGAREG_ELASTIX_EXECUTABLE} TFX=${GIGAREG_TRANSFORMIX} TOOL=$<TARGET_FILE:elx_tool>
  DATA=${CMAKE_SOURCE_DIR}/test/data WORK=${_elx_work} PARAMS=${_elx_dir}/params
  OMP_NUM_THREADS=2)
function(gigareg_elastix_test name)
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} -E env ${_elx_env} bash ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS elastix FIXTURES_REQUIRED elastix_data TIMEOUT 600)
endfunction()

add_test(NAME elastix_data COMMAND ${CMAKE_COMMAND} -E env ${_elx_env} bash ${_elx_dir}/prepare.sh ${_elx_work})
set_tests_properties(elastix_data PROPERTIES LABELS elastix FIXTURES_SETUP elastix_data TIMEOUT 300)

set(W ${_elx_work})
set(P ${_elx_dir}/params)
# Metric value and derivative vs elastix's own (Full sampler, linear interpolation):
#   METRIC TRANSFORM FIXED MOVING value-rtol derivative-rtol optimizer-gain
gigareg_elastix_test(elastix_value_meansquares_euler ${_elx_dir}/metric_value.sh
  AdvancedMeanSquares EulerTransform ${W}/t1_affine.nii.gz ${W}/t1.nii.gz 1e-4 1e-3 0.001)
gigareg_elastix_test(elastix_value_ncc_euler ${_elx_dir}/metric_value.sh
  AdvancedNormalizedCorrelation EulerTransform ${W}/t1_affine.nii.gz ${W}/t1.nii.gz 1e-4 1e-3 10)
gigareg_elastix_test(elastix_value_mi_euler ${_elx_dir}/metric_value.sh
  AdvancedMattesMutualInformation EulerTransform ${W}/t1.nii.gz ${W}/pd.nii.gz 3e-2 1e-1 10)
gigareg_elastix_test(elastix_value_meansquares_bspline ${_elx_dir}/metric_value.sh
  AdvancedMeanSquares BSplineTransform ${W}/t1_bspline.nii.gz ${W}/t1.nii.gz 1e-4 1e-3 1)
gigareg_elastix_test(elastix_value_mi_bspline ${_elx_dir}/metric_value.sh
  AdvancedMattesMutualInformation BSplineTransform ${W}/t1.nii.gz ${W}/pd.nii.gz 3e-2 1e-1 100)
# ... with fixed and moving masks (-fMask, -mMask: head masks).
gigareg_elastix_test(elastix_value_ncc_euler_masks ${_elx_dir}/metric_value.sh
  AdvancedNormalizedCorrelation EulerTransform ${W}/t1_affine.nii.gz ${W}/t1.nii.gz 1e-4 1e-3 10)
set_property(TEST elastix_value_ncc_euler_masks APPEND PROPERTY ENVIRONMENT
  FMASK=${W}/t1_mask.nii.gz MMASK=${W}/t1_mask.nii.gz)
# (MI with head masks: the joint histogram carries little information at the identity
#  (-MI = -0.028), so the core's small binning differences weigh more: measured 4.6% / 22%.)
gigareg_elastix_test(elastix_value_mi_bspline_masks ${_elx_dir}/metric_value.sh
  AdvancedMattesMutualInformation BSplineTransform ${W}/t1.nii.gz ${W}/pd.nii.gz 6e-2 3e-1 100)
set_property(TEST elastix_value_mi_bspline_masks APPEND PROPERTY ENVIRONMENT
  FMASK=${W}/t1_mask.nii.gz MMASK=${W}/pd_mask.nii.gz)

# Same parameter file(s), elastix's metric vs the GigaReg name; both applied by transformix;
# the deformation fields agree within TOL mm (mean endpoint error over the head).
gigareg_elastix_test(elastix_pair_rigid_mi_known_affine ${_elx_dir}/run_pair.sh
  rigid_mi_known_affine ${P}/rigid_mi.txt ${W}/t1_affine.nii.gz ${W}/t1.nii.gz 1.0)
gigareg_elastix_test(elastix_pair_affine_mi_known_affine ${_elx_dir}/run_pair.sh
  affine_mi_known_affine ${P}/affine_mi.txt ${W}/t1_affine.nii.gz ${W}/t1.nii.gz 0.25
  ${W}/truth_affine_def.nii.gz)
gigareg_elastix_test(elastix_pair_affine_mi_t1_pd ${_elx_dir}/run_pair.sh
  affine_mi_t1_pd ${P}/affine_mi.txt ${W}/t1.nii.gz ${W}/pd.nii.gz 1.0)
gigareg_elastix_test(elastix_pair_affine_bspline_mi_t1_pd ${_elx_dir}/run_pair.sh
  affine_bspline_mi_t1_pd ${P}/affine_mi.txt,${P}/bspline_mi.txt ${W}/t1.nii.gz ${W}/pd.nii.gz 4.0)
set_property(TEST elastix_pair_affine_bspline_mi_t1_pd APPEND PROPERTY ENVIRONMENT COVER=1)
gigareg_elastix_test(elastix_pair_bspline_ncc_known_bspline ${_elx_dir}/run_pair.sh
  bspline_ncc_known_bspline ${P}/bspline_ncc.txt ${W}/t1_bspline.nii.gz ${W}/t1.nii.gz 1.5
  ${W}/truth_bspline_def.nii.gz)
gigareg_elastix_test(elastix_pair_bspline_ncc_full_known_bspline ${_elx_dir}/run_pair.sh
  bspline_ncc_full_known_bspline ${P}/bspline_ncc_full.txt ${W}/t1_bspline.nii.gz ${W}/t1.nii.gz 0.5
  ${W}/truth_bspline_def.nii.gz)

# GigaRegLocalNormalizedCorrelation (no elastix counterpart): recovers the known B-spline warp.
gigareg_elastix_test(elastix_lncc_known_bspline ${_elx_dir}/run_one.sh
  lncc_known_bspline ${P}/bspline_ncc.txt ${W}/t1_bspline.nii.gz ${W}/t1.nii.gz
  ${W}/truth_bspline_def.nii.gz 1.5 "(Metric \"GigaRegLocalNormalizedCorrelation\")")

# B-spline fast path (own cubic B-spline evaluation after the affine stage) vs elastix's generic
# per-voxel TransformPoint / Jacobian path.
gigareg_elastix_test(elastix_bspline_fast_vs_generic ${_elx_dir}/fast_vs_generic.sh
  bspline_fast_vs_generic ${W}/t1.nii.gz ${W}/pd.nii.gz 0.1
  ${P}/affine_mi.txt ${P}/bspline_mi.txt)

# (GigaRegNumberOfDevices 3): identical TransformParameters to one shard (linear MI; dense LNCC).
gigareg_elastix_test(elastix_devices_affine_mi ${_elx_dir}/devices.sh
  devices_affine_mi ${P}/affine_mi.txt ${W}/t1_affine.nii.gz ${W}/t1.nii.gz 3
  "(Metric \"GigaRegAdvancedMattesMutualInformation\")")
gigareg_elastix_test(elastix_devices_bspline_lncc ${_elx_dir}/devices.sh
  devices_bspline_lncc ${P}/bspline_ncc.txt ${W}/t1_bspline.nii.gz ${W}/t1.nii.gz 3
  "(Metric \"GigaRegLocalNormalizedCorrelation\")")
