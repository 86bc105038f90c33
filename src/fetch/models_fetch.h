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
 * A fetch downloads every file into MODELS_DIR/.partial/NAME/PATH.part
 * (resumed with a Range request when the part exists), checks size and
 * SHA-256, writes manifest.json and fetch.json (the catalogue entry it was
 * installed from), then renames the directory to MODELS_DIR/NAME in one step.
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
