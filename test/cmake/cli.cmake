# CLI tests: bad inputs, -q, determinism, and the transformix round trip.
add_executable(make_cli_inputs ${CMAKE_CURRENT_SOURCE_DIR}/make_cli_inputs.c)
add_executable(img_compare ${CMAKE_CURRENT_SOURCE_DIR}/img_compare.c)
foreach(t make_cli_inputs img_compare)
  target_link_libraries(${t} PRIVATE gigareg)
  target_include_directories(${t} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/module/src)
  set_target_properties(${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
endforeach()
set(_cli_in ${GR_TEST_TMP_DIR}/cli_inputs)
add_test(NAME cli_inputs COMMAND ${CMAKE_COMMAND} -E env bash -c
  "mkdir -p ${_cli_in} && ${CMAKE_BINARY_DIR}/bin/make_cli_inputs ${GR_TEST_DATA_DIR} ${_cli_in}")
set_tests_properties(cli_inputs PROPERTIES FIXTURES_SETUP cli LABELS "cli;unit")
foreach(c missing_file truncated_file corrupt_header image_2d zero_spacing nan_voxels empty_mask
          mask_grid_mismatch param_syntax negative_iterations unknown_transform missing_param_file
          unknown_option quiet deterministic transformix_roundtrip masks t0)
  add_test(NAME cli_${c} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_tests.sh ${c}
           ${CMAKE_BINARY_DIR}/bin ${_cli_in} ${GR_TEST_TMP_DIR}/cli)
  set_tests_properties(cli_${c} PROPERTIES FIXTURES_REQUIRED cli SKIP_RETURN_CODE 77 LABELS "cli;unit" TIMEOUT 600)
endforeach()
