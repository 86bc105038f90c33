/*
 * infer/clip.h — a CLIP model pair (image encoder + text encoder) loaded from
 * an Immich / OpenCLIP-layout directory, for "photos matching this text".
 *
 * Directory layout (Immich's exports; OpenCLIP's config file is accepted in
 * place of Immich's):
 *
 *   DIR/visual/model.onnx            input "image" float [N,3,H,W] (or "pixel_values")
 *                                    -> output "embedding" [N,D]
 *   DIR/visual/preprocess_cfg.json   {"size": 224 | [H,W], "mean": [..], "std": [..] (0..1
 *                                    scale), "interpolation", "resize_mode"}
 *   DIR/textual/model.onnx           input "text" int32 or int64 [N,77] (or "input_ids")
 *                                    -> output "embedding" [N,D]
 *   DIR/textual/tokenizer.json       HF tokenizers JSON, or vocab.json + merges.txt, or
 *                                    bpe_simple_vocab_16e6.txt.gz (in textual/ or DIR)
 *   DIR/textual/tokenizer_config.json  optional: "pad_token" (default: id 0, OpenCLIP's)
 *   DIR/config.json                  optional open_clip model config: embed_dim,
 *                                    text_cfg.context_length (default 77)
 *   DIR/open_clip_config.json        optional, OpenCLIP's: model_cfg (as config.json) and
 *                                    preprocess_cfg (mean, std) when preprocess_cfg.json is absent
 *
 * The visual side becomes an ordinary image_embedding infer_model (its
 * manifest synthesised from preprocess_cfg: NCHW, mean/std scaled to 0..255,
 * output role "embedding", family "clip", input.resize from "resize_mode"
 * and "interpolation"), so the existing pipeline runs it like any other image
 * embedder. The image is resized as Immich's machine-learning service does
 * with Pillow, bit for bit on the same decoded pixels (vision_preprocess):
 * resize_mode "shortest" (the default, OpenCLIP's) scales the shortest side
 * to the input and centre-crops ("shortest_crop_*"), "squash" stretches
 * ("squash_*"); interpolation "bicubic" (the default) or "bilinear". Other
 * values fail with ERR_MANIFEST naming the file and key.
 *
 * The text side is optional: a directory without textual/model.onnx loads,
 * and clip_encode_text then fails naming the missing file.
 *
 * Threading: a clip_model is immutable after clip_model_load; clip_encode_text
 * and runs of the visual model may be called from any number of threads.
 */
#ifndef INFERD_INFER_CLIP_H
#define INFERD_INFER_CLIP_H

#include "infer/infer.h"
#include "infer/manifest.h"
#include "text/tokenizer.h"
#include "util/err.h"

typedef struct clip_model clip_model;

/*
 * Loads the CLIP directory `dir`. On success `*out` is owned by the caller
 * (clip_model_free); `env` must outlive it. Fails with ERR_NOENT naming
 * visual/model.onnx when it is missing, or the tokenizer files when the text
 * model exists without them; ERR_MANIFEST / ERR_FORMAT naming the file and key
 * for a malformed preprocess_cfg.json or config; ERR_MODEL when a model does
 * not have the expected input ("image"/"pixel_values", "text"/"input_ids") or
 * output "embedding", or the two encoders disagree on the embedding size.
 */
int clip_model_load(infer_env *env, const char *dir, clip_model **out, err_t *e);

/* Releases both models and the tokenizer. NULL is a no-op. */
void clip_model_free(clip_model *m);

/* The embedding size D shared by both encoders. */
int clip_embedding_dim(const clip_model *m);

/* The context length the text model takes (77 for every released CLIP). */
int clip_context_length(const clip_model *m);

/*
 * The image encoder as an image_embedding model (output role "embedding"),
 * to hand to the pipeline. Owned by `m`: do not free it.
 */
infer_model *clip_visual(const clip_model *m);

/* The tokenizer, or NULL when the directory has no text model. Owned by `m`. */
const text_tokenizer *clip_tokenizer(const clip_model *m);

/*
 * Embeds the NUL-terminated UTF-8 `text`: tokenise (text_tokenize: cleanup,
 * BPE, SOT/EOT, truncation to the context length keeping EOT, padding), run
 * the text model with ids of the element type it declares (int32 or int64),
 * and L2-normalise into out[0..clip_embedding_dim(m)). Fails with ERR_NOENT
 * naming textual/model.onnx when the directory has no text model,
 * ERR_TOOBIG for text over TEXT_MAX_QUERY_BYTES, ERR_RUNTIME when the run
 * fails, ERR_MODEL when the output is not D floats. Thread-safe.
 */
int clip_encode_text(clip_model *m, const char *text, float *out, err_t *e);

/*
 * Synthesises the image_embedding manifest of `dir`/visual from its
 * preprocess_cfg.json (or open_clip_config.json, or OpenAI CLIP's defaults:
 * 224, mean 0.48145466 0.4578275 0.40821073, std 0.26862954 0.26130258
 * 0.27577711; resize shortest_crop_bicubic). `embedding_dim` is config.json's
 * embed_dim or 0 when unknown.
 * Errors as clip_model_load for the config files. The manifest has no labels
 * (nothing to clear).
 */
int clip_visual_manifest(const char *dir, model_manifest *man, err_t *e);

#endif
