# Replays the parameter-file fuzz corpus (fuzz/corpus/param: seeds and nasty
# inputs) through the fuzz target with the ordinary compiler, so crashes the
# fuzzer once found stay fixed. The parser and mapping sources are compiled
# into the replayer with AddressSanitizer + UBSan when the compiler can link
# them, so out-of-bounds reads fail the test even in a plain build.
include(CheckCSourceCompiles)
set(_gr_fz_dir ${PROJECT_SOURCE_DIR}/fuzz)
add_executable(fuzz_param_replay
  ${_gr_fz_dir}/fuzz_param_file.c
  ${_gr_fz_dir}/fuzz_driver_main.c
  ${PROJECT_SOURCE_DIR}/module/src/io/param_file.c
  ${PROJECT_SOURCE_DIR}/module/src/registration/param_map.c)
target_link_libraries(fuzz_param_replay PRIVATE gigareg)
target_include_directories(fuzz_param_replay PRIVATE ${PROJECT_SOURCE_DIR}/module/src)
target_compile_options(fuzz_param_replay PRIVATE -Wall -Wextra)

if(NOT DEFINED GR_FUZZ_REPLAY_SANITIZE)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=address,undefined")
  set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=address,undefined")
  check_c_source_compiles("int main(void){return 0;}" GR_FUZZ_REPLAY_SANITIZE)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
endif()
if(GR_FUZZ_REPLAY_SANITIZE AND NOT GIGAREG_SANITIZE)
  target_compile_options(fuzz_param_replay PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=undefined
                         -fno-omit-frame-pointer)
  target_link_options(fuzz_param_replay PRIVATE -fsanitize=address,undefined)
endif()

add_test(NAME fuzz_param_regression COMMAND fuzz_param_replay ${_gr_fz_dir}/corpus/param)

set_tests_properties(fuzz_param_regression PROPERTIES TIMEOUT 300)

# Image-reader corpus (fuzz/corpus/image: first byte = format, then the file):
# valid seeds plus truncated/garbled headers.
add_executable(fuzz_image_replay ${_gr_fz_dir}/fuzz_image_header.c ${_gr_fz_dir}/fuzz_driver_main.c)
target_link_libraries(fuzz_image_replay PRIVATE gigareg)
target_compile_options(fuzz_image_replay PRIVATE -Wall -Wextra)
add_test(NAME fuzz_image_regression COMMAND fuzz_image_replay ${_gr_fz_dir}/corpus/image)
set_tests_properties(fuzz_image_regression PROPERTIES TIMEOUT 300 LABELS unit)
