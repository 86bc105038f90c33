# tools/tfjs2onnx.cmake — the TF.js graph model -> ONNX converter used by
# models/provision.sh. The util sources are compiled in directly (rather than
# linking inferd_core) so that the converter builds on its own.
set(T2O_DIR "${CMAKE_SOURCE_DIR}/tools/tfjs2onnx")
set(T2O_LIB_SRC "${T2O_DIR}/jslit.c" "${T2O_DIR}/tfjs.c" "${T2O_DIR}/convert.c"
  "${T2O_DIR}/dlibnet.c"
  "${CMAKE_SOURCE_DIR}/tools/onnxb/onnxb.c"
  "${CMAKE_SOURCE_DIR}/src/util/err.c" "${CMAKE_SOURCE_DIR}/src/util/log.c"
  "${CMAKE_SOURCE_DIR}/src/util/xalloc.c")

add_library(tfjs2onnx_lib STATIC ${T2O_LIB_SRC})
target_include_directories(tfjs2onnx_lib PUBLIC "${T2O_DIR}" "${CMAKE_SOURCE_DIR}/tools/onnxb"
  "${CMAKE_SOURCE_DIR}/src")
target_compile_options(tfjs2onnx_lib PRIVATE ${INFERD_WARNINGS})
target_compile_definitions(tfjs2onnx_lib PUBLIC ${INFERD_DEFS})
target_link_libraries(tfjs2onnx_lib PUBLIC onnx_pb PkgConfig::JANSSON m)

add_executable(tfjs2onnx "${T2O_DIR}/main.c")
target_compile_options(tfjs2onnx PRIVATE ${INFERD_WARNINGS})
target_link_libraries(tfjs2onnx PRIVATE tfjs2onnx_lib)
set_target_properties(tfjs2onnx PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}")
