/*
 * fetch/models_fetch.h — `inferd models ...`: installs model directories from
 * a catalogue over http(s) (`models fetch NAME`) and lists the installed ones
 * with a check of their files (`models list`).
 *
 * The catalogue is a JSON file (models/catalog.json by default, or any file
 * or http(s) URL given with --catalog):
 *
 *   {
 *     "format": 1,
 *     "models": {
 *       "NAME": {                                 [A-Za-z0-9._-], not starting with '.'
 *         "task": "face_detection",               informative
 *         "licence": "Apache-2.0",                informative
 *         "source": "where the files come from",  informative
 *         "files": [                              one or more
 *           { "path": "visual/model.onnx",        relative, no "." or ".." parts
 *             "url": "{base}/NAME/visual/model.onnx",
 *             "sha256": "<64 hex digits>",
 *             "size": 12345 }                     bytes, the download cap too
 *         ],
 *         "manifest": { ... }                     optional: written as NAME/manifest.json
 *       }
 *     }
 *   }
 *
 * "{base}" in a URL is replaced by --base-url, so that the catalogue names
 * no host: a user points --base-url at a mirror of the model files.
 *
 * `models fetch immich/MODEL` takes its files from a Hugging Face compatible
 * hub instead (--hub-url, no default; --revision, default "main"): the
 * repository immich-app/MODEL that Immich's machine-learning service uses.
 * GET HUB/api/models/immich-app/MODEL/tree/REV?recursive=true lists it (a
 * JSON array of {"type", "path", "size", "oid", "lfs": {"oid", "size"}},
 * pages followed by Link rel="next"); the files of one known layout are
 * taken and every other file is skipped:
 *   clip: visual/model.onnx, textual/model.onnx, textual/tokenizer.json
 *         (required), visual/preprocess_cfg.json,
 *         textual/tokenizer_config.json, config.json (when listed)
 *   face: detection/model.onnx, recognition/model.onnx
 * Each comes from HUB/immich-app/MODEL/resolve/REV/PATH and is checked by
 * size and by lfs.oid (sha256) or, outside LFS, by its git blob id "oid"
 * (SHA-1 of "blob SIZE\0" + contents). The install is MODELS_DIR/MODEL,
 * without manifest.json (infer/clip.c loads the CLIP layout as it is);
 * fetch.json records hub_url, repo, revision, layout and every file's
 * sha256 (computed for the non-LFS ones) and git_oid or lfs.
 *
 * A fetch downloads every file into MODELS_DIR/.partial/NAME/PATH.part
 * (resumed with a Range request when the part exists), checks size and
 * SHA-256, writes manifest.json and fetch.json (the catalogue entry it was
 * installed from), then renames the directory to MODELS_DIR/NAME in one step.
 * Both sources share that machinery.
 * Threading: a CLI entry point for the main thread of a short-lived process;
 * it initialises and cleans up libcurl's global state itself (balanced, so a
 * caller that uses libcurl too is unaffected).
 */
#ifndef INFERD_FETCH_MODELS_FETCH_H
#define INFERD_FETCH_MODELS_FETCH_H

/*
 * Runs `inferd models SUBCOMMAND [options]`: argv[0] is "models" (or any
 * name), argv[1] is "fetch", "list" or "help". Reads its options through
 * the config table (util/config.h: CONFIG_ROLE_MODELS_FETCH / _LIST; argv
 * is permuted), prints help on -h/--help to stdout and usage errors to
 * stderr. Returns the process exit status: 0 on success
 * (including "present": nothing to do), 1 when a fetch or check failed
 * (the reason is printed to stderr), 2 on a usage error.
 */
int models_fetch_main(int argc, char **argv);

#endif
