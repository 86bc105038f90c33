# Black-box tests of the `inferd` command line (label cli): every
# tests/cli/NN-area-behaviour.sh runs against the built binary with the
# provisioned models, as `cli.NN-area-behaviour`. The scripts source
# tests/cli/lib.sh and read their inputs from the environment set here, so
# that a script can also be run by hand:
#   INFERD=build/inferd INFERD_TEST_MODELS=var/models INFERD_TESTDATA=.deps/testdata \
#     bash tests/cli/01-analyze-output.sh
# The ASan build runs them too (make test-asan): lib.sh fails a script whose
# inferd printed a sanitizer report, whatever its exit status was.
file(GLOB INFERD_CLI_TESTS CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/cli/[0-9][0-9]-*.sh")
foreach(script ${INFERD_CLI_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME cli.${name} COMMAND bash ${script})
  set_tests_properties(cli.${name} PROPERTIES LABELS cli TIMEOUT 300
    ENVIRONMENT "INFERD=${CMAKE_BINARY_DIR}/inferd;INFERD_TEST_MODELS=${INFERD_MODELS};INFERD_TESTDATA=${INFERD_TESTDATA}")
endforeach()
