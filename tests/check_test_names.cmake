# Owns the guard that every Catch2 test name survives CTest discovery: catch_discover_tests turns ';' into a
# list separator and '[' into a tag, so such a name would split or swallow its neighbours and run nothing.
# Catch2 2.13 exits with the number of tests listed, so the output, not the status, says whether it worked.
execute_process(COMMAND ${TESTS} --list-test-names-only OUTPUT_VARIABLE names)
if(NOT names MATCHES "[a-z]")
  message(FATAL_ERROR "troupe_tests --list-test-names-only listed nothing")
endif()
string(REPLACE ";" "<semicolon>" names "${names}")
string(REPLACE "\n" ";" names "${names}")
set(bad "")
foreach(name IN LISTS names)
  if(name MATCHES "<semicolon>|\\[|\\]")
    string(APPEND bad "\n  ${name}")
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "test names CTest cannot discover (rename them: no ';', '[' or ']'):${bad}")
endif()
message(STATUS "all test names are safe for CTest discovery")
