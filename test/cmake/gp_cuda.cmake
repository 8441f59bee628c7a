# Grid Parallel on the CUDA backend under mpirun (test/test_gp_cuda.c, which is
# also registered as a plain test: local shards on one GPU). --mpi: one rank per
# process, device buffers through the MPI communicator (host staging, or a
# CUDA-aware MPI); --nccl: the NCCL communicator (one GPU per rank; skips with
# fewer GPUs). Every variant exits 77 without a GPU, CUDA, MPI or NCCL.
if(GIGAREG_HAVE_MPI AND MPIEXEC_EXECUTABLE)
  set(_gr_cu_pre ${MPIEXEC_PREFLAGS})
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _gr_cu_ver ERROR_VARIABLE _gr_cu_ver)
  if(_gr_cu_ver MATCHES "Open MPI|OpenRTE")
    list(APPEND _gr_cu_pre --oversubscribe)
  endif()
  foreach(mode mpi nccl)
    add_test(NAME test_gp_cuda_${mode}_np2
             COMMAND ${CMAKE_COMMAND} -E env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=2
                     ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${_gr_cu_pre} $<TARGET_FILE:test_gp_cuda> --${mode})
    set_tests_properties(test_gp_cuda_${mode}_np2 PROPERTIES LABELS "mpi;cuda" SKIP_RETURN_CODE 77 TIMEOUT 900
                         PROCESSORS 2)
  endforeach()
endif()

# The gigareg CLI sharded on the GPU (-shards 3; mpiexec -n 2 with -comm mpi and,
# with two GPUs, -comm nccl): outputs close to the one-shard CUDA run.
if(GIGAREG_HAVE_CUDA)
  set(_gr_cu_cli_mpi)
  if(GIGAREG_HAVE_MPI AND MPIEXEC_EXECUTABLE)
    set(_gr_cu_cli_mpi env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=2
        ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${_gr_cu_pre})
  endif()
  add_test(NAME gp_cuda_cli_shards COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/gp_cuda_cli.sh ${CMAKE_BINARY_DIR}/bin
           ${GR_TEST_TMP_DIR}/cli_inputs ${GR_TEST_TMP_DIR}/gp_cuda_cli ${_gr_cu_cli_mpi})
  set_tests_properties(gp_cuda_cli_shards PROPERTIES FIXTURES_REQUIRED cli LABELS "cli;cuda" SKIP_RETURN_CODE 77
                       TIMEOUT 600)
endif()
