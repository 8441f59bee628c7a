# Grid Parallel under mpirun: the sharded tests once more with 2, 3 and 4 MPI
# ranks (each rank computes its slabs; rank 0 compares with the single-process
# result). Root needs Open MPI's opt-in variables; --oversubscribe lets 4 ranks
# share the 2 cores of a CI machine. Without MPI in the build the same tests
# are registered and skip (exit 77), so their absence is visible.
set(_gr_mpi_tests test_gp_shards test_gp_register test_gp_failure test_gp_io)
if(GIGAREG_HAVE_MPI AND MPIEXEC_EXECUTABLE)
  set(_gr_mpi_pre ${MPIEXEC_PREFLAGS})
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _gr_mpiexec_version
                  ERROR_VARIABLE _gr_mpiexec_version RESULT_VARIABLE _gr_rc)
  if(_gr_mpiexec_version MATCHES "Open MPI|OpenRTE")
    list(APPEND _gr_mpi_pre --oversubscribe)
  endif()
  foreach(t ${_gr_mpi_tests})
    foreach(np 2 3 4)
      add_test(NAME ${t}_mpi_np${np}
               COMMAND ${CMAKE_COMMAND} -E env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
                       OMP_NUM_THREADS=1
                       ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${_gr_mpi_pre} $<TARGET_FILE:${t}> --mpi)
      set_tests_properties(${t}_mpi_np${np} PROPERTIES LABELS mpi SKIP_RETURN_CODE 77 TIMEOUT 600 PROCESSORS ${np})
    endforeach()
  endforeach()
else()
  foreach(t ${_gr_mpi_tests})
    add_test(NAME ${t}_mpi COMMAND ${t} --mpi)
    set_tests_properties(${t}_mpi PROPERTIES LABELS mpi SKIP_RETURN_CODE 77)
  endforeach()
endif()

# The gigareg CLI sharded (-shards 3, and mpiexec -n 2 when MPI is built):
# outputs byte-identical to the single-shard run.
set(_gr_gp_cli_mpi)
if(GIGAREG_HAVE_MPI AND MPIEXEC_EXECUTABLE)
  set(_gr_gp_cli_mpi env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
      ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${_gr_mpi_pre})
endif()
add_test(NAME gp_cli_shards COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/gp_cli.sh ${CMAKE_BINARY_DIR}/bin
         ${GR_TEST_TMP_DIR}/cli_inputs ${GR_TEST_TMP_DIR}/gp_cli ${_gr_gp_cli_mpi})
set_tests_properties(gp_cli_shards PROPERTIES FIXTURES_REQUIRED cli LABELS "cli;mpi" TIMEOUT 600)
