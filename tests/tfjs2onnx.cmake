# tests/tfjs2onnx.cmake — unit test of the TF.js -> ONNX converter. It links
# the converter's library (tools/tfjs2onnx.cmake), not inferd_core, so its
# source is not named tests/unit/test_*.c.
add_executable(test_tfjs2onnx_unit "${CMAKE_SOURCE_DIR}/tests/unit/tfjs2onnx_test.c")
target_compile_options(test_tfjs2onnx_unit PRIVATE ${INFERD_WARNINGS})
target_link_libraries(test_tfjs2onnx_unit PRIVATE tfjs2onnx_lib PkgConfig::CMOCKA m)
add_test(NAME unit.tfjs2onnx COMMAND test_tfjs2onnx_unit)
set_tests_properties(unit.tfjs2onnx PROPERTIES LABELS unit TIMEOUT 60)
