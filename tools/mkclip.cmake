# tools/mkclip.cmake — `mkclip`, which writes a small CLIP-shaped model
# directory (Immich layout, seeded random weights) for the CLIP tests. Like
# tfjs2onnx it compiles the few sources it needs instead of linking
# inferd_core, so that it needs neither ONNX Runtime nor libvips.
add_executable(mkclip "${CMAKE_SOURCE_DIR}/tools/mkclip/mkclip.c"
  "${CMAKE_SOURCE_DIR}/tools/onnxb/onnxb.c"
  "${CMAKE_SOURCE_DIR}/src/text/bpe.c"
  "${CMAKE_SOURCE_DIR}/src/util/err.c" "${CMAKE_SOURCE_DIR}/src/util/log.c"
  "${CMAKE_SOURCE_DIR}/src/util/xalloc.c")
target_include_directories(mkclip PRIVATE "${CMAKE_SOURCE_DIR}/src" "${CMAKE_SOURCE_DIR}/tools/onnxb")
target_compile_options(mkclip PRIVATE ${INFERD_WARNINGS})
target_compile_definitions(mkclip PRIVATE ${INFERD_DEFS})
target_link_libraries(mkclip PRIVATE onnx_pb PkgConfig::JANSSON PkgConfig::ZLIB PkgConfig::UTF8PROC
  Threads::Threads)
set_target_properties(mkclip PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}")

# test_clip and test_models_hub run mkclip at test time: build it whenever
# they are built. tests/ is processed after tools/, so the dependency is
# added once the top-level directory is done.
function(inferd_mkclip_test_dep)
  foreach(t test_clip test_models_hub)
    if(TARGET ${t})
      add_dependencies(${t} mkclip)
    endif()
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL inferd_mkclip_test_dep)
