# Run by `cmake --install` after the headers are copied to TROUPE_HEADER_DIR (<prefix>/include/troupe):
# rewrites their includes of troupe's own headers, "runtime/tensor.h", to "troupe/runtime/tensor.h", so
# that an installed header needs only <prefix>/include on the include path.
if(NOT TROUPE_HEADER_DIR)
  message(FATAL_ERROR "TroupeInstallHeaders.cmake: TROUPE_HEADER_DIR is not set")
endif()
file(GLOB_RECURSE _troupe_headers "${TROUPE_HEADER_DIR}/*.h" "${TROUPE_HEADER_DIR}/*.cuh")
foreach(_h IN LISTS _troupe_headers)
  file(READ "${_h}" _text)
  string(REGEX REPLACE "#include \"(runtime|models|actors|net)/" "#include \"troupe/\\1/" _new "${_text}")
  if(NOT _new STREQUAL _text)
    file(WRITE "${_h}" "${_new}")
  endif()
endforeach()
