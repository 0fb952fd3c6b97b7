# Owns the guard that every Catch2 test name survives CTest discovery: catch_discover_tests turns ';' into a
# list separator and '[' into a tag, so such a name would split or swallow its neighbours and run nothing.
# Catch2 2.13 exits with the number of tests listed, so the output, not the status, says whether it worked.
# And that every name survives a failure: Catch2 2.13's console reporter wraps a failing test's name with
# its continuation lines indented to just past the name's first ": ". Past column 76 the wrapping column
# is one character wide and the reporter prints "-" lines forever — a failing test then hangs and fills
# the disk (seen: 69 GB in ten minutes, for a name whose ": " stood at column 77, mistaken for a hang of
# the restart under test). Names keep the text before their first ": " to 70 characters.
execute_process(COMMAND ${TESTS} --list-test-names-only OUTPUT_VARIABLE names)
if(NOT names MATCHES "[a-z]")
  message(FATAL_ERROR "troupe_tests --list-test-names-only listed nothing")
endif()
string(REPLACE ";" "<semicolon>" names "${names}")
string(REPLACE "\n" ";" names "${names}")
set(bad "")
set(late_colon "")
foreach(name IN LISTS names)
  if(name MATCHES "<semicolon>|\\[|\\]")
    string(APPEND bad "\n  ${name}")
  endif()
  string(FIND "${name}" ": " colon)
  if(colon GREATER 70)
    string(APPEND late_colon "\n  ${name}")
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "test names CTest cannot discover (rename them: no ';', '[' or ']'):${bad}")
endif()
if(late_colon)
  message(FATAL_ERROR "test names whose first ': ' comes after 70 characters (Catch2 2.13 prints their failure header "
                      "forever; shorten the text before it):${late_colon}")
endif()
message(STATUS "all test names are safe for CTest discovery")
