# The store conformance suite (tests/unit/test_store.c) against both
# backends: tests/pg/with_pg.sh starts a throwaway PostgreSQL server
# (Debian's postgresql package, see tests/pg/pgctl.sh), points
# INFERD_TEST_STORE_URLS at the SQLite default and at that server with one
# schema per test, runs the same test_store binary and stops the server.
# Exit 77 (skipped) when no PostgreSQL server is installed.
add_test(NAME unit.test_store_pg
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/pg/with_pg.sh $<TARGET_FILE:test_store>)
set_tests_properties(unit.test_store_pg PROPERTIES LABELS unit TIMEOUT 300
  SKIP_RETURN_CODE 77)

# The scheduler's tests (tests/unit/test_sched.c) on both backends the same way.
add_test(NAME unit.test_sched_pg
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/pg/with_pg.sh $<TARGET_FILE:test_sched>)
set_tests_properties(unit.test_sched_pg PROPERTIES LABELS unit TIMEOUT 300
  SKIP_RETURN_CODE 77)
