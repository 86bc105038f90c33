# tools/mkfaces.cmake — `mkfaces`, which writes a small insightface-shaped (buffalo_l) model
# directory (Immich layout, planted detections, seeded weights) for the face tests. Like
# tfjs2onnx it compiles the few sources it needs instead of linking
# inferd_core, so that it needs neither ONNX Runtime nor libvips.
add_executable(mkfaces "${CMAKE_SOURCE_DIR}/tools/mkfaces/mkfaces.c"
  "${CMAKE_SOURCE_DIR}/tools/onnxb/onnxb.c"
  "${CMAKE_SOURCE_DIR}/src/util/err.c" "${CMAKE_SOURCE_DIR}/src/util/log.c"
  "${CMAKE_SOURCE_DIR}/src/util/xalloc.c")
target_include_directories(mkfaces PRIVATE "${CMAKE_SOURCE_DIR}/src" "${CMAKE_SOURCE_DIR}/tools/onnxb")
target_compile_options(mkfaces PRIVATE ${INFERD_WARNINGS})
target_compile_definitions(mkfaces PRIVATE ${INFERD_DEFS})
target_link_libraries(mkfaces PRIVATE onnx_pb PkgConfig::JANSSON PkgConfig::ZLIB Threads::Threads)
set_target_properties(mkfaces PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}")

# test_scrfd runs mkfaces at test time: build it whenever test_scrfd is built.
# tests/ is processed after tools/, so the dependency is added once the
# top-level directory is done.
function(inferd_mkfaces_test_dep)
  if(TARGET test_scrfd)
    add_dependencies(test_scrfd mkfaces)
  endif()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL inferd_mkfaces_test_dep)
