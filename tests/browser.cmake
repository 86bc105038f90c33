# The web page in a real browser (label e2e): tests/browser/ui.test.mjs drives
# Debian's chromium through puppeteer-core (tests/browser/node_modules, from
# `scripts/setup.sh browser`) against a real `inferd serve`, after a real
# `inferd index`. Screenshots of each page land in
# ${CMAKE_BINARY_DIR}/browser-out. Indexes ../shared/data/faces-dev for the
# people pages when it is there.
add_test(NAME e2e.20-browser-ui
  COMMAND node ${CMAKE_CURRENT_SOURCE_DIR}/browser/ui.test.mjs)
set_tests_properties(e2e.20-browser-ui PROPERTIES LABELS e2e TIMEOUT 600 RUN_SERIAL TRUE
  ENVIRONMENT "INFERD_BIN=${CMAKE_BINARY_DIR}/inferd;INFERD_MODELS_DIR=${INFERD_MODELS};INFERD_TESTDATA=${INFERD_TESTDATA};INFERD_TEST_OUT=${CMAKE_BINARY_DIR}/browser-out;INFERD_FACES_DEV=${CMAKE_SOURCE_DIR}/../shared/data/faces-dev")
