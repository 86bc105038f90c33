# models.parity — every converted model (tools/tfjs2onnx) against its original
# TF.js graph model run by @tensorflow/tfjs in node (tests/ref/tfjs_ref.js),
# on real images: cosine >= 0.9999 per image and output. Needs provisioned
# models (make models) and scripts/setup.sh testref; see tests/models/parity.c.
add_executable(models_parity ${CMAKE_CURRENT_SOURCE_DIR}/models/parity.c)
target_compile_options(models_parity PRIVATE ${INFERD_WARNINGS})
target_link_libraries(models_parity PRIVATE inferd_core inferd_testsupport)
target_compile_definitions(models_parity PRIVATE INFERD_TESTDATA="${INFERD_TESTDATA}"
  INFERD_MODELS="${INFERD_MODELS}" INFERD_SRCDIR="${CMAKE_SOURCE_DIR}")
add_test(NAME models.parity COMMAND models_parity)
set_tests_properties(models.parity PROPERTIES LABELS models TIMEOUT 900)

# models.pipeline_parity — the whole path, photo file to result, against the
# reference libraries' own pipelines run in node: face descriptors against
# face-api's computeFaceDescriptor on the same boxes, NSFW scores against
# nsfwjs's classify() (tests/models/pipeline_parity.py).
add_test(NAME models.pipeline_parity COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/models/pipeline_parity.py)
set_tests_properties(models.pipeline_parity PROPERTIES LABELS models TIMEOUT 600
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;INFERD_BIN=${CMAKE_BINARY_DIR}/inferd;INFERD_MODELS_DIR=${INFERD_MODELS};INFERD_TESTDATA=${INFERD_TESTDATA}")
