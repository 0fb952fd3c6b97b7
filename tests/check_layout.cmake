# The layout shows the design (STYLE.md, "Dependency direction"): fails naming each file that breaks it.
#  - runtime/ and models/ include no CAF, Asio or Cap'n Proto;
#  - actors/state/ (plain state machines) includes no CAF and no actor header outside actors/state/.
# Run as: cmake -DSOURCE_DIR=<repo> -P check_layout.cmake
set(violations "")
function(check_dir dir pattern why)
  file(GLOB_RECURSE files "${SOURCE_DIR}/${dir}/*.h" "${SOURCE_DIR}/${dir}/*.cpp" "${SOURCE_DIR}/${dir}/*.cu" "${SOURCE_DIR}/${dir}/*.cuh")
  foreach(f IN LISTS files)
    file(STRINGS "${f}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"](${pattern})")
    foreach(line IN LISTS lines)
      file(RELATIVE_PATH rel "${SOURCE_DIR}" "${f}")
      string(STRIP "${line}" line)
      string(APPEND violations "  ${rel}: ${line}  (${why})\n")
    endforeach()
  endforeach()
  set(violations "${violations}" PARENT_SCOPE)
endfunction()
check_dir(runtime "caf/|boost/asio|asio|capnp/|kj/|actors/|net/" "runtime/ depends on nothing above it")
check_dir(models "caf/|boost/asio|asio|capnp/|kj/|actors/|net/" "models/ depends on runtime/ only")
check_dir(actors/state "caf/|actors/[a-z_]+[.]h|actors/ps/" "actors/state/ is plain C++: no CAF, no actor shells")
if(violations)
  message(FATAL_ERROR "layout violations:\n${violations}Move the code to the layer that may depend on it.")
endif()
message(STATUS "layout: runtime/, models/ and actors/state/ include only what their layer may")
