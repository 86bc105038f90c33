# tokenizer.clip_js_diff — the CLIP tokenizer (src/text/bpe.c) on the real
# vocabulary against clip-bpe-js, an independent JS port of OpenAI's
# simple_tokenizer.py run by node (tests/tokenizer/clip_js_ref.mjs), on
# tests/tokenizer/corpus.json and generated strings. Labelled unit so that the
# ASan run (make test-asan) includes it. Needs node and scripts/setup.sh
# testdata; see tests/tokenizer/clip_js_diff.c.
add_executable(clip_js_diff ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer/clip_js_diff.c)
target_compile_options(clip_js_diff PRIVATE ${INFERD_WARNINGS})
target_link_libraries(clip_js_diff PRIVATE inferd_core inferd_testsupport)
target_compile_definitions(clip_js_diff PRIVATE INFERD_TESTDATA="${INFERD_TESTDATA}"
  INFERD_SRCDIR="${CMAKE_SOURCE_DIR}")
add_test(NAME tokenizer.clip_js_diff COMMAND clip_js_diff)
set_tests_properties(tokenizer.clip_js_diff PROPERTIES LABELS unit TIMEOUT 300)
