# libFuzzer targets: tests/fuzz/fuzz_<name>.c, each with a seed corpus in
# tests/fuzz/corpus/<name>/. The project compiles with the system C compiler, and
# libFuzzer needs clang, so each target is a custom command that compiles the core
# sources with clang (-fsanitize=fuzzer,address,undefined). ctest runs every target
# for WSHUB_FUZZ_SECONDS (short); `make fuzz` runs them for longer.
find_program(CLANG NAMES clang clang-14)
set(WSHUB_FUZZ_SECONDS 15 CACHE STRING "seconds each fuzz target runs inside ctest")
if(NOT CLANG)
  message(WARNING "clang not found: fuzz targets are not built")
  return()
endif()

file(GLOB fuzz_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
set(fuzz_bins "")
foreach(src IN LISTS fuzz_srcs)
  get_filename_component(name ${src} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" short ${name})
  set(bin ${CMAKE_BINARY_DIR}/fuzz/${name})
  add_custom_command(
    OUTPUT ${bin}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/fuzz
    COMMAND ${CLANG} -std=c11 -g -O1 -D_GNU_SOURCE -DWSHUB_VERSION="${PROJECT_VERSION}"
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -I${CMAKE_SOURCE_DIR}/src ${WSHUB_SOURCES} ${src} -ljansson -ljwt -lcurl -lhiredis -lssl -lcrypto -lz -lpthread
            -lm
            -o ${bin}
    DEPENDS ${WSHUB_SOURCES} ${src}
    COMMENT "Building fuzz target ${name} with clang"
    VERBATIM)
  list(APPEND fuzz_bins ${bin})
  add_test(NAME fuzz/${short}
           COMMAND ${CMAKE_SOURCE_DIR}/tests/fuzz/run.sh ${bin}
                   ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${short} ${WSHUB_FUZZ_SECONDS})
  set_tests_properties(fuzz/${short} PROPERTIES TIMEOUT 900)
endforeach()
add_custom_target(fuzz_targets ALL DEPENDS ${fuzz_bins})
