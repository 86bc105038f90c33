# The real-embedding search test (tests/unit/test_search_real.c) on
# PostgreSQL: tests/pg/with_pg.sh starts a throwaway server and sets
# INFERD_TEST_STORE_URLS to SQLite and that server; the argument "postgres"
# keeps only the server's URL, since unit.test_search_real already covers
# SQLite and the embeddings cost most of the run. Exit 77 (skipped) only when
# no PostgreSQL server is installed.
add_test(NAME unit.test_search_real_pg
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/pg/with_pg.sh $<TARGET_FILE:test_search_real> postgres)
set_tests_properties(unit.test_search_real_pg PROPERTIES LABELS unit TIMEOUT 300
  SKIP_RETURN_CODE 77)
