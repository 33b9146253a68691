# Test registration. Every test is added once per build variant (see CMakeLists.txt):
# unit tests link the variant's core library; integration tests get the variant's
# server binary in WSHUB_BIN and start/stop it themselves.

# Unit tests: tests/unit/test_<name>.c, cmocka.
file(GLOB WSHUB_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
if(NOT CMOCKA_FOUND)
  message(FATAL_ERROR "cmocka not found: run scripts/setup.sh test (make test does)")
endif()

foreach(variant IN LISTS WSHUB_VARIANTS)
  wshub_suffix(${variant} v)
  foreach(src IN LISTS WSHUB_UNIT_TESTS)
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name}${v} ${src})
    wshub_apply_variant(${name}${v} "${v}")
    target_include_directories(${name}${v} PRIVATE ${CMOCKA_INCLUDE_DIRS})
    target_link_libraries(${name}${v} PRIVATE wshub_core${v} ${CMOCKA_LIBRARIES})
    add_test(NAME unit${v}/${name} COMMAND ${name}${v})
  endforeach()
endforeach()

# Integration tests: real clients against the real binary.
find_program(NODE node)
find_program(OPENSSL_CLI openssl) # the TLS tests make a throwaway CA with it
if(NOT OPENSSL_CLI)
  message(FATAL_ERROR "openssl (the command) not found: run scripts/setup.sh test (make test does)")
endif()
set(SYS_PYTHON /usr/bin/python3)
# promtool and a Prometheus server for test_metrics.py (Debian package prometheus); the
# test fails with a clear message when they are missing, the build does not.
find_program(PROMTOOL promtool)
find_program(PROMETHEUS prometheus)
if(NOT PROMTOOL OR NOT PROMETHEUS)
  message(WARNING "promtool/prometheus not found: test_metrics will fail; run scripts/setup.sh test")
endif()
# redis-server and haproxy for the multi-node tests (test_cluster*.py start their own);
# the tests fail with a clear message when they are missing, the build does not.
find_program(REDIS_SERVER redis-server)
find_program(HAPROXY haproxy PATHS /usr/sbin /sbin)
if(NOT REDIS_SERVER OR NOT HAPROXY)
  message(WARNING "redis-server/haproxy not found: the cluster tests will fail; run scripts/setup.sh test")
endif()
foreach(variant IN LISTS WSHUB_VARIANTS)
  wshub_suffix(${variant} v)
  set(envs "WSHUB_BIN=$<TARGET_FILE:wshub${v}>"
           "WSHUB_VARIANT=${variant}"
           "NODE_PATH=${CMAKE_SOURCE_DIR}/tests/js/node_modules"
           "WSHUB_PROMTOOL=${PROMTOOL}"
           "WSHUB_PROMETHEUS=${PROMETHEUS}"
           "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99"
           "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=98")
  file(GLOB js_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/*.test.js)
  foreach(t IN LISTS js_tests)
    get_filename_component(name ${t} NAME_WE)
    add_test(NAME js${v}/${name} COMMAND ${NODE} --test ${t})
    set_tests_properties(js${v}/${name} PROPERTIES ENVIRONMENT "${envs}" TIMEOUT 300)
  endforeach()
  file(GLOB py_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/test_*.py)
  foreach(t IN LISTS py_tests)
    get_filename_component(name ${t} NAME_WE)
    add_test(NAME py${v}/${name} COMMAND ${SYS_PYTHON} -m unittest -v ${name}
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/integration)
    set_tests_properties(py${v}/${name} PROPERTIES ENVIRONMENT "${envs}" TIMEOUT 300)
  endforeach()
  # RFC 6455 conformance suite (Autobahn-style case list, see docs/conformance.md).
  add_test(NAME conformance${v} COMMAND ${SYS_PYTHON} -m unittest -v test_conformance
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/conformance)
  set_tests_properties(conformance${v} PROPERTIES ENVIRONMENT "${envs}" TIMEOUT 600)
endforeach()
