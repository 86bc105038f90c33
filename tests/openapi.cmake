# The OpenAPI document api/openapi.json (label lint): `redocly lint` with the
# recommended rules (tests/openapi/redocly.yaml) must find neither an error nor
# a warning, and must refuse a broken copy of the document
# (tests/openapi/lint.py). Redocly CLI comes from the committed
# tests/openapi/package-lock.json (`scripts/setup.sh openapi`, which `make test`
# runs). The responses of a real daemon are checked against the document by
# e2e.22-openapi, its routes against the router by unit.test_api_parse.
add_test(NAME lint.openapi COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/openapi/lint.py)
set_tests_properties(lint.openapi PROPERTIES LABELS lint TIMEOUT 300
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
