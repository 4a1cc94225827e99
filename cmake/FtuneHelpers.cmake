# ftune_test(NAME SOURCES... [LIBS ...] [LABELS ...])
# One gtest binary whose tests ctest discovers. The test sees the build's
# bin/ directory and the source tree as the macros FTUNE_BIN_DIR and
# FTUNE_SOURCE_DIR, so it can start our real binaries and read test data.
function(ftune_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  target_compile_definitions(${name} PRIVATE
    FTUNE_BIN_DIR="${CMAKE_BINARY_DIR}/bin"
    FTUNE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} ftune_testing GTest::gmock GTest::gtest_main ftune_warnings)
  if(ARG_LABELS)
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}")
  else()
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60)
  endif()
endfunction()
