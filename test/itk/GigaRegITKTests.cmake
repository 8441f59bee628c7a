# One test driver (ITK test-driver style: argv[1] names the test) so the ITK
# templates are compiled once; several CTest entries, label "itk".
set(_gr_itk_test_dir ${CMAKE_CURRENT_LIST_DIR})
set(GR_ITK_TEST_TMP ${CMAKE_BINARY_DIR}/test/itk-tmp)
file(MAKE_DIRECTORY ${GR_ITK_TEST_TMP})
add_executable(GigaRegITKTestDriver
  ${_gr_itk_test_dir}/itkGigaRegTestDriver.cxx
  ${_gr_itk_test_dir}/itkGigaRegMetricTest.cxx
  ${_gr_itk_test_dir}/itkGigaRegResampleTest.cxx
  ${_gr_itk_test_dir}/itkGigaRegRegistrationMethodTest.cxx
  ${_gr_itk_test_dir}/itkGigaRegMetricInRegistrationTest.cxx
  ${_gr_itk_test_dir}/itkGigaRegCLITest.cxx)
target_link_libraries(GigaRegITKTestDriver PRIVATE GigaRegITK)
target_include_directories(GigaRegITKTestDriver PRIVATE ${_gr_itk_test_dir})
target_compile_options(GigaRegITKTestDriver PRIVATE -Wall -Wextra)
target_compile_definitions(GigaRegITKTestDriver PRIVATE
  GR_TEST_DATA_DIR="${CMAKE_SOURCE_DIR}/test/data"
  GR_ITK_TEST_TMP="${GR_ITK_TEST_TMP}")
# The CLI comparison runs the real `gigareg` binary (target gigareg_cli).
if(TARGET gigareg_cli)
  add_dependencies(GigaRegITKTestDriver gigareg_cli)
  target_compile_definitions(GigaRegITKTestDriver PRIVATE GR_GIGAREG_CLI="$<TARGET_FILE:gigareg_cli>")
endif()

foreach(_t
    itkGigaRegLNCCMetricTest
    itkGigaRegMattesMetricTest
    itkGigaRegResampleTest
    itkGigaRegFactoryTest
    itkGigaRegRegistrationMethodTest
    itkGigaRegMetricInRegistrationTest
    itkGigaRegSyNTest
    itkGigaRegCLITest)
  add_test(NAME ${_t} COMMAND GigaRegITKTestDriver ${_t})
  set_tests_properties(${_t} PROPERTIES LABELS itk TIMEOUT 120 SKIP_RETURN_CODE 77
    ENVIRONMENT "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=2;OMP_NUM_THREADS=2")
endforeach()
