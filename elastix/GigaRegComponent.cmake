# Included by every elastix/GigaReg*/CMakeLists.txt (elastix's ADD_ELXCOMPONENT has
# created the component's static library by then): compile against the GigaReg C
# headers and link the gigareg static library and its dependencies.
#
# GigaReg's build passes GIGAREG_LIBRARY, GIGAREG_INCLUDE_DIR, GIGAREG_LINK_LIBRARIES
# and GIGAREG_LINK_FLAGS. In an elastix tree configured by hand
# (-DELASTIX_USER_COMPONENT_DIRS=<gigareg>/elastix) set at least
#   -DGIGAREG_LIBRARY=<gigareg build>/libgigareg.a -DGIGAREG_INCLUDE_DIR=<gigareg>/module/include
# (the link libraries default to a CPU build's: z m pthread + OpenMP; never nifticlib, whose
# symbols clash with ITK's NIfTI library).
if(NOT GIGAREG_LIBRARY OR NOT GIGAREG_INCLUDE_DIR)
  message(FATAL_ERROR "GigaReg elastix components: set GIGAREG_LIBRARY (path of libgigareg.a) and "
                      "GIGAREG_INCLUDE_DIR (<gigareg>/module/include), or turn the components off with "
                      "-DUSE_GigaReg<...>=OFF")
endif()
if(NOT DEFINED GIGAREG_LINK_LIBRARIES)
  set(GIGAREG_LINK_LIBRARIES z m pthread)
  set(GIGAREG_LINK_FLAGS -fopenmp)
endif()
set(GIGAREG_ELASTIX_COMPONENT_DIR ${CMAKE_CURRENT_LIST_DIR})

macro(gigareg_elastix_component name)
  if(USE_${name})
    target_include_directories(${name} PRIVATE ${GIGAREG_INCLUDE_DIR} ${GIGAREG_ELASTIX_COMPONENT_DIR}/common)
    # elastix links components with the plain target_link_libraries signature; so do we.
    target_link_libraries(${name} ${GIGAREG_LIBRARY} ${GIGAREG_LINK_LIBRARIES} ${GIGAREG_LINK_FLAGS})
  endif()
endmacro()
