# ITK layer over the C core: itk::GigaReg* classes (header templates in
# module/include, non-template glue in module/src/itk), one test driver with
# several CTest entries (label "itk"), and ITK wrapping when built inside an
# ITK tree with ITK_WRAPPING on.
#
# This file builds against an *installed* ITK with find_package + plain targets:
# include(ITKModuleExternal) needs an ITK build tree (ITKModuleMacros.cmake),
# which installed packages (Debian's libinsighttoolkit5-dev) do not ship.
# Inside an ITK build tree, itk-module.cmake describes the same module.

set(GIGAREG_ITK_COMPONENTS
  ITKCommon ITKImageFunction ITKImageGrid ITKTransform ITKDisplacementField
  ITKMetricsv4 ITKOptimizersv4 ITKRegistrationMethodsv4 ITKSpatialObjects
  ITKIOImageBase ITKIONIFTI ITKIOMeta ITKIOTransformBase ITKIOTransformInsightLegacy)

set(_gr_itk_root ${CMAKE_CURRENT_LIST_DIR}/..)
file(GLOB GIGAREG_ITK_SOURCES CONFIGURE_DEPENDS ${_gr_itk_root}/module/src/itk/*.cxx)

# Inside an ITK build tree (Modules/Remote/GigaReg with Module_GigaReg=ON) the
# module macros exist and ITK's targets are already defined: describe the module
# to ITK (itk-module.cmake) instead of finding an installed ITK. Not exercised
# by CI (it needs an ITK source build); docs/itk.md says what to pass.
if(COMMAND itk_module_impl AND DEFINED ITK_SOURCE_DIR)
  enable_language(CXX)
  set(GigaReg_INCLUDE_DIRS ${_gr_itk_root}/module/include)
  set(GigaReg_LIBRARIES GigaRegITK gigareg)
  itk_module_impl()
  add_library(GigaRegITK STATIC ${GIGAREG_ITK_SOURCES})
  target_include_directories(GigaRegITK PUBLIC ${_gr_itk_root}/module/include)
  foreach(_dep IN LISTS ITK_MODULE_GigaReg_DEPENDS)
    target_link_libraries(GigaRegITK PUBLIC ${${_dep}_LIBRARIES})
  endforeach()
  target_link_libraries(GigaRegITK PUBLIC gigareg)
  itk_module_target(GigaRegITK)
  itk_module_target(gigareg)
  set(GIGAREG_HAVE_ITK_LAYER ON)
  message(STATUS "GigaReg ITK layer: ON (remote module inside the ITK build tree)")
  return()
endif()

set(GIGAREG_HAVE_ITK_LAYER OFF)
if(NOT "${GIGAREG_USE_ITK}" STREQUAL "OFF")
  # ITKConfig probes compilers; the C core project only enabled C.
  enable_language(CXX)
  if("${GIGAREG_USE_ITK}" STREQUAL "ON")
    find_package(ITK 5 REQUIRED COMPONENTS ${GIGAREG_ITK_COMPONENTS})
  else()
    find_package(ITK 5 QUIET COMPONENTS ${GIGAREG_ITK_COMPONENTS})
  endif()
  if(ITK_FOUND)
    set(GIGAREG_HAVE_ITK_LAYER ON)
  endif()
endif()

if(NOT GIGAREG_HAVE_ITK_LAYER)
  if("${GIGAREG_USE_ITK}" STREQUAL "OFF")
    message(STATUS "GigaReg ITK layer: OFF (GIGAREG_USE_ITK=OFF)")
  else()
    message(STATUS "GigaReg ITK layer: OFF (ITK 5 with ${GIGAREG_ITK_COMPONENTS} not found)")
  endif()
  return()
endif()
message(STATUS "GigaReg ITK layer: ON (ITK ${ITK_VERSION} at ${ITK_DIR})")

# Non-template glue (image/transform conversion, backend handle, factory).
add_library(GigaRegITK STATIC ${GIGAREG_ITK_SOURCES})
target_include_directories(GigaRegITK PUBLIC ${_gr_itk_root}/module/include)
# ITK headers as SYSTEM: -Wall -Wextra then reports our code only.
target_include_directories(GigaRegITK SYSTEM PUBLIC ${ITK_INCLUDE_DIRS})
target_link_libraries(GigaRegITK PUBLIC gigareg ${ITK_LIBRARIES})
target_compile_options(GigaRegITK PRIVATE -Wall -Wextra)
# Per target, not CMAKE_CXX_STANDARD: other C++ layers of the project choose their own.
target_compile_features(GigaRegITK PUBLIC cxx_std_14)
set_target_properties(GigaRegITK PROPERTIES POSITION_INDEPENDENT_CODE ON)

if(GIGAREG_BUILD_TESTS)
  include(${_gr_itk_root}/test/itk/GigaRegITKTests.cmake)
endif()

# Wrapping needs ITK's WrapITK macros (itk_wrap_module ...), which exist only
# in an ITK build with ITK_WRAPPING=ON; in the ITK tree itk_module_impl adds
# wrapping/ itself. Debian's ITK has no wrapping: nothing to do here.
if(ITK_WRAPPING AND COMMAND itk_wrap_module)
  add_subdirectory(${_gr_itk_root}/wrapping ${CMAKE_BINARY_DIR}/wrapping)
endif()
