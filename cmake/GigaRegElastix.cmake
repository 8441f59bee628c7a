# elastix 5.0.1 with GigaReg components (issue 7; docs/elastix.md).
#
#   GIGAREG_USE_ELASTIX    AUTO|ON|OFF. AUTO: build when ITK is found and the elastix source exists.
#   GIGAREG_ELASTIX_SOURCE elastix 5.0.1 source: a directory (an upstream checkout) or a tarball.
#                          Default: the trimmed copy vendored in elastix/third_party/.
#
# elastix is built as an ExternalProject (its own CMake configure, ITK from find_package)
# with ELASTIX_USER_COMPONENT_DIRS=<repo>/elastix, so the GigaReg components in
# elastix/GigaReg*/ are compiled into its `elastix` executable: <build>/elastix-build/bin/elastix.
# The components link the gigareg static library of this build and its dependencies.
set(GIGAREG_USE_ELASTIX AUTO CACHE STRING "elastix with GigaReg components (AUTO|ON|OFF)")
set(GIGAREG_ELASTIX_SOURCE "${CMAKE_CURRENT_SOURCE_DIR}/elastix/third_party/elastix-5.0.1-trimmed.tar.xz"
    CACHE PATH "elastix 5.0.1 source: directory or tarball")
set(GIGAREG_ELASTIX_JOBS "" CACHE STRING "parallel jobs for the elastix build (empty: number of cores)")

set(GIGAREG_HAVE_ELASTIX OFF)
set(_gr_elx_note "")
if("${GIGAREG_USE_ELASTIX}" STREQUAL "OFF")
  set(_gr_elx_note "disabled")
elseif(GIGAREG_SANITIZE AND NOT "${GIGAREG_USE_ELASTIX}" STREQUAL "ON")
  set(_gr_elx_note "sanitizer build; force with GIGAREG_USE_ELASTIX=ON")
else()
  if(NOT ITK_FOUND)
    enable_language(CXX) # ITKConfig probes compilers; the C core only enabled C
    find_package(ITK 5 QUIET COMPONENTS ITKCommon)
  endif()
  if(NOT ITK_FOUND)
    set(_gr_elx_note "ITK not found")
  elseif(NOT EXISTS "${GIGAREG_ELASTIX_SOURCE}")
    set(_gr_elx_note "GIGAREG_ELASTIX_SOURCE '${GIGAREG_ELASTIX_SOURCE}' does not exist")
  else()
    set(GIGAREG_HAVE_ELASTIX ON)
  endif()
  if("${GIGAREG_USE_ELASTIX}" STREQUAL "ON" AND NOT GIGAREG_HAVE_ELASTIX)
    message(FATAL_ERROR "GIGAREG_USE_ELASTIX=ON but ${_gr_elx_note}")
  endif()
endif()
if(NOT GIGAREG_HAVE_ELASTIX)
  message(STATUS "GigaReg: elastix components: OFF (${_gr_elx_note})")
  return()
endif()
message(STATUS "GigaReg: elastix components: ON (source ${GIGAREG_ELASTIX_SOURCE})")

include(ExternalProject)

# What the parts of the gigareg static library the components use (backends, kernels,
# geometry) need at link time, as plain paths/flags. NOT nifticlib: the components do no
# file I/O, and Debian's libniftiio2 exports the same symbols as ITK's own NIfTI library,
# so linking it would make elastix's NIfTI reader call the wrong functions.
set(_gr_elx_libs ${ZLIB_LIBRARIES} m)
if(GIGAREG_HAVE_OPENMP)
  list(APPEND _gr_elx_libs ${OpenMP_C_LIBRARIES})
  set(_gr_elx_omp_flags "${OpenMP_C_FLAGS}")
else()
  set(_gr_elx_omp_flags "")
endif()
separate_arguments(_gr_elx_omp_flags UNIX_COMMAND "${_gr_elx_omp_flags}")
if(GIGAREG_SANITIZE)
  list(APPEND _gr_elx_omp_flags -fsanitize=address,undefined)
endif()
if(GIGAREG_HAVE_CUDA)
  list(APPEND _gr_elx_libs ${CUDA_cudart_LIBRARY})
endif()
if(GIGAREG_HAVE_MPI)
  list(APPEND _gr_elx_libs ${MPI_C_LIBRARIES})
endif()
if(GIGAREG_HAVE_NCCL)
  list(APPEND _gr_elx_libs ${NCCL_LIBRARY})
endif()
list(APPEND _gr_elx_libs ${CMAKE_THREAD_LIBS_INIT} pthread dl)

# Components of the elastix build: a minimal set (what the tests and the
# ElastixModelZoo-style parameter files use) plus ours. Every other upstream
# component is switched off so an upstream checkout builds the same set.
set(GIGAREG_ELASTIX_COMPONENTS_ON
  MultiResolutionRegistration
  EulerTransformElastix AdvancedAffineTransformElastix AdvancedBSplineTransform
  BSplineInterpolator LinearInterpolator BSplineResampleInterpolator
  MyStandardResampler FixedSmoothingPyramid FixedRecursivePyramid MovingSmoothingPyramid MovingRecursivePyramid
  FullSampler RandomCoordinateSampler AdaptiveStochasticGradientDescent
  AdvancedMattesMutualInformationMetric AdvancedNormalizedCorrelationMetric AdvancedMeanSquaresMetric)
set(GIGAREG_ELASTIX_COMPONENTS_OFF
  MultiMetricMultiResolutionRegistration TranslationTransformElastix LinearResampleInterpolator RandomSampler
  MultiResolutionRegistrationWithFeatures TranslationStackTransform BSplineTransformWithDiffusion
  DeformationFieldTransform WeightedCombinationTransformElastix AffineLogTransformElastix
  SimilarityTransformElastix AffineLogStackTransform BSplineStackTransform MultiBSplineTransformWithNormal
  AffineDTITransformElastix SplineKernelTransform EulerStackTransform RecursiveBSplineTransform
  BSplineInterpolatorFloat RayCastInterpolator ReducedDimensionBSplineInterpolator NearestNeighborInterpolator
  AdaptiveStochasticLBFGS ConjugateGradient Powell ConjugateGradientFRPR FullSearch CMAEvolutionStrategy
  QuasiNewtonLBFGS StandardGradientDescent PreconditionedGradientDescent FiniteDifferenceGradientDescent
  PreconditionedStochasticGradientDescent RegularStepGradientDescent AdaGrad Simplex
  AdaptiveStochasticVarianceReducedGradient RSGDEachParameterApart SimultaneousPerturbation
  SumOfPairwiseCorrelationCoefficientsMetric VarianceOverLastDimensionMetric PatternIntensityMetric PCAMetric2
  TransformRigidityPenalty TransformBendingEnergyPenalty PolydataDummyPenalty StatisticalShapePenalty
  DistancePreservingRigidityPenalty ViolaWellsMutualInformationMetric DisplacementMagnitudePenalty
  NormalizedMutualInformationMetric CorrespondingPointsEuclideanDistanceMetric MutualInformationHistogramMetric
  MissingStructurePenalty AdvancedKappaStatisticMetric SumSquaredTissueVolumeDifferenceMetric
  NormalizedGradientCorrelationMetric PCAMetric KNNGraphAlphaMutualInformationMetric GradientDifferenceMetric
  NearestNeighborResampleInterpolator RayCastResampleInterpolator BSplineResampleInterpolatorFloat
  ReducedDimensionBSplineResampleInterpolator MovingGenericPyramid OpenCLMovingGenericPyramid
  MovingShrinkingPyramid OpenCLResampler MultiInputRandomCoordinateSampler GridSampler RandomSamplerSparseMask
  FixedGenericPyramid OpenCLFixedGenericPyramid FixedShrinkingPyramid)
set(_gr_elx_use "")
foreach(_c ${GIGAREG_ELASTIX_COMPONENTS_ON})
  list(APPEND _gr_elx_use "-DUSE_${_c}:BOOL=ON")
endforeach()
foreach(_c ${GIGAREG_ELASTIX_COMPONENTS_OFF})
  list(APPEND _gr_elx_use "-DUSE_${_c}:BOOL=OFF")
endforeach()

# Debian's ITK exports its FFTW dependencies as bare names (-lfftw3 ...), which need the
# libfftw3-dev symlinks (only "Recommended" by libinsighttoolkit5-dev). When those are
# missing but the runtime libraries are installed, link through symlinks of our own.
set(_gr_elx_linkdir ${CMAKE_BINARY_DIR}/elastix-linkdir)
set(_gr_elx_ldflags "")
foreach(_l fftw3 fftw3_threads fftw3f fftw3f_threads)
  find_library(GIGAREG_ELX_LIB_${_l} ${_l})
  if(NOT GIGAREG_ELX_LIB_${_l})
    find_file(GIGAREG_ELX_SO_${_l} lib${_l}.so.3
      PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/lib64 /usr/lib NO_DEFAULT_PATH)
    if(GIGAREG_ELX_SO_${_l})
      file(MAKE_DIRECTORY ${_gr_elx_linkdir})
      file(CREATE_LINK ${GIGAREG_ELX_SO_${_l}} ${_gr_elx_linkdir}/lib${_l}.so SYMBOLIC)
      set(_gr_elx_ldflags "-L${_gr_elx_linkdir}")
    endif()
  endif()
endforeach()

if(IS_DIRECTORY "${GIGAREG_ELASTIX_SOURCE}")
  set(_gr_elx_src SOURCE_DIR "${GIGAREG_ELASTIX_SOURCE}")
else()
  set(_gr_elx_src URL "${GIGAREG_ELASTIX_SOURCE}" SOURCE_DIR "${CMAKE_BINARY_DIR}/elastix-src")
  if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.24)
    list(APPEND _gr_elx_src DOWNLOAD_EXTRACT_TIMESTAMP TRUE)
  endif()
endif()
if("${GIGAREG_ELASTIX_JOBS}" STREQUAL "")
  cmake_host_system_information(RESULT _gr_elx_jobs QUERY NUMBER_OF_LOGICAL_CORES)
else()
  set(_gr_elx_jobs ${GIGAREG_ELASTIX_JOBS})
endif()
file(GLOB _gr_elx_component_files CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/elastix/*/CMakeLists.txt
  ${CMAKE_CURRENT_SOURCE_DIR}/elastix/GigaRegComponent.cmake)

set(GIGAREG_ELASTIX_BINARY_DIR ${CMAKE_BINARY_DIR}/elastix-build)
set(GIGAREG_ELASTIX_EXECUTABLE ${GIGAREG_ELASTIX_BINARY_DIR}/bin/elastix)
# transformix of the same build (the GigaReg components compiled in; reads the standard names
# the GigaReg resampler writes, as Debian's transformix does)
set(GIGAREG_TRANSFORMIX_EXECUTABLE ${GIGAREG_ELASTIX_BINARY_DIR}/bin/transformix)
ExternalProject_Add(gigareg_elastix
  ${_gr_elx_src}
  BINARY_DIR ${GIGAREG_ELASTIX_BINARY_DIR}
  CMAKE_GENERATOR ${CMAKE_GENERATOR}
  CMAKE_ARGS
    -DGIGAREG_LIBRARY:FILEPATH=$<TARGET_FILE:gigareg>
  CMAKE_CACHE_ARGS
    -DCMAKE_BUILD_TYPE:STRING=Release
    -DITK_DIR:PATH=${ITK_DIR}
    -DBUILD_TESTING:BOOL=OFF
    -DCMAKE_EXE_LINKER_FLAGS:STRING=${_gr_elx_ldflags}
    -DBUILD_SHARED_LIBS:BOOL=OFF
    -DELASTIX_USE_OPENCL:BOOL=OFF
    -DELASTIX_IMAGE_DIMENSIONS:STRING=3
    -DELASTIX_IMAGE_3D_PIXELTYPES:STRING=float
    -DELASTIX_USER_COMPONENT_DIRS:PATH=${CMAKE_CURRENT_SOURCE_DIR}/elastix
    -DGIGAREG_INCLUDE_DIR:PATH=${CMAKE_CURRENT_SOURCE_DIR}/module/include
    -DGIGAREG_LINK_LIBRARIES:STRING=${_gr_elx_libs}
    -DGIGAREG_LINK_FLAGS:STRING=${_gr_elx_omp_flags}
    ${_gr_elx_use}
  BUILD_COMMAND ${CMAKE_COMMAND} --build <BINARY_DIR> --target elastix_exe transformix_exe -j ${_gr_elx_jobs}
  BUILD_ALWAYS TRUE
  INSTALL_COMMAND ""
  DEPENDS gigareg
  USES_TERMINAL_BUILD TRUE)
# elastix's configure globs the component folders: re-run it when their CMakeLists change.
ExternalProject_Add_Step(gigareg_elastix gigareg_components
  DEPENDERS configure DEPENDS ${_gr_elx_component_files} ${CMAKE_CURRENT_LIST_FILE})

# Small helper tools of the tests and the benchmark (C, on the core's I/O).
if(GIGAREG_BUILD_TESTS)
  include(${CMAKE_CURRENT_SOURCE_DIR}/test/elastix/tests.cmake OPTIONAL)
endif()
