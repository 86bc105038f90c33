# Black-box tests of the running daemon (label e2e): every
# tests/e2e/NN-area-behaviour.py spawns `inferd serve` on a free 127.0.0.1
# port with a temp data dir, a real mosquitto broker and a local media server
# (tests/e2e/inferdtest.py), as `e2e.NN-area-behaviour`. Run one by hand:
#   INFERD_BIN=build/inferd INFERD_MODELS_DIR=var/models INFERD_TESTDATA=.deps/testdata \
#     python3 tests/e2e/01-api-seed-scenario.py
# They measure latency and kill processes, so they run one at a time
# (RUN_SERIAL): a parallel ctest would make the timing checks meaningless.
set(INFERD_E2E_TIMEOUT_01-api-seed-scenario 300)
set(INFERD_E2E_TIMEOUT_03-crash-kill9 360)
set(INFERD_E2E_TIMEOUT_04-broker-outage 360)
set(INFERD_E2E_TIMEOUT_13-search 600)
file(GLOB INFERD_E2E_TESTS CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/e2e/[0-9][0-9]-*.py")
foreach(script ${INFERD_E2E_TESTS})
  get_filename_component(name ${script} NAME_WE)
  set(timeout 300)
  if(DEFINED INFERD_E2E_TIMEOUT_${name})
    set(timeout ${INFERD_E2E_TIMEOUT_${name}})
  endif()
  add_test(NAME e2e.${name} COMMAND python3 ${script})
  set_tests_properties(e2e.${name} PROPERTIES LABELS e2e TIMEOUT ${timeout} RUN_SERIAL TRUE
    ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;INFERD_BIN=${CMAKE_BINARY_DIR}/inferd;INFERD_MODELS_DIR=${INFERD_MODELS};INFERD_TESTDATA=${INFERD_TESTDATA}")
endforeach()
# PostgreSQL scale-out tests (tests/e2e/1N-pg-*.py): each starts its own
# throwaway server with tests/pg/pgctl.sh and exits 77 (skipped) when no
# PostgreSQL server is installed.
set(INFERD_E2E_PG_TESTS 10-pg-scaleout 11-pg-restart 12-pg-migrate-race)
foreach(name ${INFERD_E2E_PG_TESTS})
  if(TEST e2e.${name})
    set_tests_properties(e2e.${name} PROPERTIES SKIP_RETURN_CODE 77)
  endif()
endforeach()
set_tests_properties(e2e.10-pg-scaleout PROPERTIES TIMEOUT 360)
