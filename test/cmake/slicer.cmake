# 3D Slicer entry point (gigareg --xml, Slicer-style runs), memory planner
# (--plan, GIGAREG_MEMORY_LIMIT_BYTES) and -qa pictures: test/slicer_tests.sh,
# checked by test/slicer_check.py (Python stdlib, numpy and nibabel, so the
# files are read back by code that is not ours). Uses the cli fixture's inputs.
if(GR_SYSTEM_PYTHON)
  foreach(c xml run tfm bad_transform plan memory_limit memory_bf16 qa)
    add_test(NAME slicer_${c} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slicer_tests.sh ${c}
             ${CMAKE_BINARY_DIR}/bin ${GR_TEST_TMP_DIR}/cli_inputs ${GR_TEST_TMP_DIR}/slicer
             ${GR_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/slicer_check.py)
    set_tests_properties(slicer_${c} PROPERTIES FIXTURES_REQUIRED cli SKIP_RETURN_CODE 77 LABELS "cli;unit"
                         TIMEOUT 600)
  endforeach()
endif()
