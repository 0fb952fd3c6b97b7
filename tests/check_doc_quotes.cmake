# Owns the guard that code quoted in the docs is code that compiles: the region of examples/embed.cpp between
# its "// [quote begin]" and "// [quote end]" lines must appear, verbatim, in README.md and docs/embedding.md.
# Usage: cmake -DROOT=<repository root> -P check_doc_quotes.cmake
file(READ ${ROOT}/examples/embed.cpp source)
set(begin_marker "  // [quote begin]\n")
set(end_marker "  // [quote end]\n")
string(FIND "${source}" "${begin_marker}" begin)
string(FIND "${source}" "${end_marker}" end)
if(begin EQUAL -1 OR end EQUAL -1 OR end LESS begin)
  message(FATAL_ERROR "examples/embed.cpp: the '// [quote begin]' and '// [quote end]' lines are missing")
endif()
string(LENGTH "${begin_marker}" marker_length)
math(EXPR begin "${begin} + ${marker_length}")
math(EXPR length "${end} - ${begin}")
string(SUBSTRING "${source}" ${begin} ${length} quoted)
foreach(doc README.md docs/embedding.md)
  file(READ ${ROOT}/${doc} text)
  string(FIND "${text}" "${quoted}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${doc} does not quote examples/embed.cpp's [quote] region verbatim; copy the lines "
                        "between '// [quote begin]' and '// [quote end]' into its cpp block")
  endif()
endforeach()
message(STATUS "README.md and docs/embedding.md quote examples/embed.cpp as it is")
