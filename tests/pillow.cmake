# clip.pillow_preprocess — CLIP image preprocessing (input.resize
# shortest_crop_* / squash_*, as clip.c sets it from preprocess_cfg.json)
# against Pillow doing what Immich's machine-learning service does, on real
# photos: tests/pillow/pillow_parity.py drives tests/pillow/preprocess_dump.c.
# Needs Debian's python3-pil and python3-numpy (scripts/setup.sh); exits 77
# (skipped) only when no python3 on PATH or /usr/bin has them.
add_executable(preprocess_dump ${CMAKE_CURRENT_SOURCE_DIR}/pillow/preprocess_dump.c)
target_compile_options(preprocess_dump PRIVATE ${INFERD_WARNINGS})
target_link_libraries(preprocess_dump PRIVATE inferd_core)
add_test(NAME clip.pillow_preprocess
  COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/pillow/pillow_parity.py)
set_tests_properties(clip.pillow_preprocess PROPERTIES LABELS unit TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;PREPROCESS_DUMP=$<TARGET_FILE:preprocess_dump>;INFERD_TESTDATA=${INFERD_TESTDATA}")
