# Our TransformParameters files applied by Debian's real transformix 5.0.1:
# an Euler + Affine chain on an oblique image must match our own trilinear
# resampling through gr_transform_parameters_read_affine, and a
# DeformationFieldTransform chained to it must move points as x' + d(x').
# Skipped (77) when transformix is not installed.
find_program(GR_TRANSFORMIX NAMES transformix PATHS /usr/bin)
add_executable(tp_transformix_check ${CMAKE_CURRENT_SOURCE_DIR}/tp_transformix_check.c)
target_link_libraries(tp_transformix_check PRIVATE gigareg)
target_include_directories(tp_transformix_check PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/module/src)
target_compile_options(tp_transformix_check PRIVATE -Wall -Wextra)
if(GR_TRANSFORMIX)
  set(_gr_tx ${GR_TRANSFORMIX})
else()
  set(_gr_tx "")
endif()
add_test(NAME transformix_affine
  COMMAND tp_transformix_check "${_gr_tx}" ${GR_TEST_TMP_DIR}/transformix_affine)
set_tests_properties(transformix_affine PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
