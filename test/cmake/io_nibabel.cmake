# Cross-check of the NIfTI reader/writer against nibabel (Debian python3-nibabel).
# io_dump (test/io_dump.c) prints what gr_image_read sees; io_nibabel_check.py
# compares it with nibabel's view of the same file and reads our vector
# fields back with nibabel. The mricron templates get their own test so that
# their absence shows as "skipped" rather than hiding in a pass.
add_executable(io_dump ${CMAKE_CURRENT_SOURCE_DIR}/io_dump.c)
target_link_libraries(io_dump PRIVATE gigareg)
target_compile_options(io_dump PRIVATE -Wall -Wextra)

if(GR_SYSTEM_PYTHON)
  set(GR_IO_NIBABEL_TMP ${GR_TEST_TMP_DIR}/io_nibabel)
  add_test(NAME io_nibabel
    COMMAND ${GR_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/io_nibabel_check.py
            --io-dump $<TARGET_FILE:io_dump> --tmp ${GR_IO_NIBABEL_TMP}
            --vector
            ${GR_TEST_DATA_DIR}/chris_t1.nii.gz ${GR_TEST_DATA_DIR}/chris_PD.nii.gz)
  add_test(NAME io_nibabel_mricron
    COMMAND ${GR_SYSTEM_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/io_nibabel_check.py
            --io-dump $<TARGET_FILE:io_dump> --tmp ${GR_IO_NIBABEL_TMP} --skip-missing
            ${GR_MRICRON_DIR}/ch2.nii.gz ${GR_MRICRON_DIR}/aal.nii.gz)
  set_tests_properties(io_nibabel io_nibabel_mricron PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
endif()
