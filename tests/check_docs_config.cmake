# Owns the guard that docs/config.md is what `troupe config --markdown` prints: the reference is generated
# from the config schema, so a key added, removed or changed without regenerating the page fails here.
# Usage: cmake -DTROUPE=<troupe binary> -DDOC=<docs/config.md> -P check_docs_config.cmake
execute_process(COMMAND ${TROUPE} config --markdown OUTPUT_VARIABLE generated RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "'${TROUPE} config --markdown' failed with status ${status}")
endif()
if(NOT EXISTS ${DOC})
  message(FATAL_ERROR "${DOC} is missing; generate it from the repository root with:\n"
                      "  build/troupe config --markdown > docs/config.md")
endif()
file(READ ${DOC} committed)
if(NOT generated STREQUAL committed)
  message(FATAL_ERROR "docs/config.md differs from what the config schema generates; regenerate it from the "
                      "repository root with:\n  build/troupe config --markdown > docs/config.md\nand commit it.")
endif()
message(STATUS "docs/config.md matches 'troupe config --markdown'")
