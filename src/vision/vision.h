/*
 * vision/vision.h — images in, faces out: decoding, preprocessing, BlazeFace
 * and SCRFD detection, face alignment.
 *
 * This subsystem turns untrusted bytes into a bounded RGB image (decode.c, the
 * one file that calls libvips), samples regions of that image into model input
 * tensors as a manifest describes them (preprocess.c, through the image
 * pyramid of pyramid.c so that cost follows the model's input size, not the
 * photo's), decodes and merges
 * BlazeFace outputs (blazeface.c, pure), runs the detector over the whole
 * image and over overlapping tiles so that small faces in group photos are
 * found (detect.c), runs Immich's SCRFD detector as insightface does
 * (scrfd.c, pure; one view through detect.c), and cuts a detected face out
 * for the embedder as its manifest says: aligned onto a keypoint template
 * (four BlazeFace points, or five SCRFD points as insightface's norm_crop)
 * or the box's square (align.c, pure). Only detect.c and the tensor helpers know
 * about infer/; nothing here knows about the daemon.
 *
 * Coordinates: pixel (x, y) covers [x, x+1) x [y, y+1); a pixel's centre is
 * at (x + 0.5, y + 0.5). Boxes are x1,y1 (inclusive corner) to x2,y2.
 *
 * Threading: after vision_init() every function may be called from any
 * thread on distinct objects, and the samplers from several threads on one
 * image (its pyramid cache is published atomically, see
 * vision_image_levels). One detection can be shared by several threads
 * (vision_detect_task, below). One caveat: libvips keeps a single process-wide
 * error buffer, so when two threads fail to decode at the same moment a
 * message may carry the other thread's text (the code is always right).
 */
#ifndef INFERD_VISION_VISION_H
#define INFERD_VISION_VISION_H

#include <stddef.h>
#include <stdint.h>

#include "infer/infer.h"
#include "infer/manifest.h"
#include "util/err.h"

/* ---- process setup ------------------------------------------------------ */

/*
 * Starts libvips once per process: `concurrency` worker threads per image
 * operation (0 = 1, since inferd parallelises across images, not within one),
 * the operation cache off (every decode is of a different file, so the
 * cache only holds memory), and every image loader blocked but those of
 * vision_accepted_formats (process-wide: libvips has no per-call switch). Fails with ERR_INTERNAL and libvips' message.
 * Further calls after a success do nothing and return ERR_OK.
 */
int vision_init(int concurrency, err_t *e);

/* "JPEG, PNG, WebP, HEIF/HEIC/AVIF, TIFF and GIF": what vision_decode_* accept. */
extern const char *const vision_accepted_formats;

/*
 * Bounds the memory that decodes in flight may hold together to `bytes`
 * (0: no bound, the default). Each decode claims, from its header, what it
 * will hold at its peak (an interlaced PNG, HEIF, WebP or GIF is decoded
 * whole at full size, a progressive JPEG keeps every coefficient; other
 * formats stream a band of rows) and waits while others hold the budget. An
 * image that alone needs more fails with ERR_TOOBIG. Thread-safe; may be
 * called before vision_init().
 */
void vision_set_decode_budget(int64_t bytes);

/* Shuts libvips down (frees its thread pool and caches). Call once at exit. */
void vision_shutdown(void);

/* ---- images ------------------------------------------------------------- */

struct vision_pyramid; /* private to pyramid.c */

/*
 * A decoded image: 8-bit sRGB, 3 interleaved bands, rows packed (stride is
 * width * 3). orig_width/orig_height are the image's upright size before the
 * shrink-on-load, so that coordinates can be reported in original pixels:
 * x_orig = x * orig_width / width.
 *
 * `pyramid` is private: a cache of successively halved copies of `rgb` that
 * the samplers below (vision_preprocess*, vision_detect_faces,
 * vision_align_face) build on first use and read from then on (see
 * vision_image_levels). Images made by this module start with it NULL;
 * vision_image_free() releases it. A caller that writes to `rgb` after the
 * image has been sampled must call vision_image_changed() first.
 */
typedef struct {
    uint8_t *rgb;
    int width, height;
    int orig_width, orig_height;
    struct vision_pyramid *_Atomic pyramid;
} vision_image;

/*
 * One pyramid level: packed 8-bit RGB like vision_image. Level l pixel (x, y)
 * covers level-0 pixels [x * 2^l, (x + 1) * 2^l) on each axis and holds their
 * mean (rounded to nearest); a last odd row or column is averaged with
 * itself. Level 0 is the image itself.
 */
typedef struct {
    const uint8_t *rgb;
    int width, height;
} vision_level;

#define VISION_MAX_LEVELS 12
#define VISION_LEVEL_MIN_SIDE 32 /* no level with a side below this (but level 0) */

/*
 * Returns the image's pyramid, building it from `rgb` on the first call:
 * level 0 aliases img->rgb, each next level halves the previous one (2x2 box
 * average, integer rounding) while both its sides stay >= 32, at most
 * VISION_MAX_LEVELS levels. The array (*nlevels entries) belongs to the image
 * and stays valid until vision_image_changed() or vision_image_free(). The
 * build costs about a third of one pass over the image and is done once per
 * image however many models then sample it.
 * Threading: safe to call from several threads on one image; a race to build
 * it first only wastes one of the builds (the cache is published with an
 * atomic compare-and-swap). Not safe against a concurrent
 * vision_image_changed() or vision_image_free(), as for any other read.
 * Returns NULL with ERR_NOMEM in `e` when the levels cannot be allocated.
 */
const vision_level *vision_image_levels(const vision_image *img, int *nlevels, err_t *e);

/*
 * Drops the cached pyramid (it is rebuilt on the next sampling call). Call it
 * after writing to img->rgb once the image has been sampled; the benchmark
 * also calls it to time the build as part of preprocessing. NULL is a no-op.
 */
void vision_image_changed(vision_image *img);

/*
 * The coarsest level that still has at least one pixel per output pixel when
 * the source is shrunk by `factor` (level-0 pixels per output pixel): the
 * largest l < nlevels with 2^l <= factor, or 0 when factor < 2. Sampling on
 * that level leaves a shrink in [1, 2), which the area average or the
 * bilinear tap then does without aliasing the detail the pyramid removed.
 */
int vision_level_for(int nlevels, double factor);

#define VISION_DEFAULT_MAX_SIDE 2048
#define VISION_DEFAULT_MAX_PIXELS 100000000LL

typedef struct {
    int max_side;         /* longest side after shrink-on-load; 0 = 2048 */
    long long max_pixels; /* header width*height cap; 0 = 100 MP */
    int64_t deadline_ms;  /* clock_mono_ms() at which decoding is killed (ERR_TIMEOUT); 0 = none */
} vision_decode_opts;

/*
 * Decodes the image file at `path` (`opts` may be NULL for defaults). The
 * header is read first: more than max_pixels pixels fails with ERR_TOOBIG
 * before any pixel is decoded. The image is then shrunk on load so that its
 * longest side is at most max_side (never enlarged; an image whose 1/2, 1/4
 * or 1/8 size falls within 10 % under max_side lands on that size instead:
 * a JPEG is decoded at that DCT scale, for a fraction of the work, other
 * formats shrink by that whole factor: 4032 wide at 2016), turned upright per its
 * EXIF orientation, converted to 8-bit sRGB, and any alpha is flattened onto
 * WHITE (transparent logos and stickers read as on paper, and black would
 * look like a dark scene to the models). Only the first page/frame of a
 * multi-page file is read. A file in a format outside
 * vision_accepted_formats (PDF, SVG, BMP, ...) fails with
 * ERR_UNSUPPORTED_FORMAT naming it. A missing file, a corrupt, truncated,
 * empty or non-image file fails with ERR_DECODE and libvips' message.
 * On success `*out` is owned by the caller: release with vision_image_free().
 */
int vision_decode_file(const char *path, const vision_decode_opts *opts, vision_image **out,
                       err_t *e);

/* As vision_decode_file() for `len` bytes at `buf` (not kept after the call). */
int vision_decode_buffer(const void *buf, size_t len, const vision_decode_opts *opts,
                         vision_image **out, err_t *e);

/*
 * Allocates a black width x height image with orig size equal to its size.
 * ERR_INVAL for a non-positive size, ERR_TOOBIG beyond 2^28 pixels. The
 * caller releases it with vision_image_free().
 */
int vision_image_new(int width, int height, vision_image **out, err_t *e);

/* Frees the image, its pixels and its pyramid. NULL is a no-op. */
void vision_image_free(vision_image *img);

/*
 * A JPEG (quality 75, no metadata) of `img` scaled down to fit `max_side`
 * (never up; area average from the image's pyramid, which this builds when
 * it is not yet there). *out is the caller's (free()); *w, *h its size.
 * ERR_NOMEM or ERR_INTERNAL with libvips' reason.
 */
int vision_thumbnail_jpeg(const vision_image *img, int max_side, unsigned char **out, size_t *len,
                          int *w, int *h, err_t *e);

/*
 * Cuts the region (x1, y1)-(x2, y2), in fractions 0..1 of the image's width
 * and height, out of the JPEG `jpeg` (clamped to the image), scales it to fit
 * `max_side` and encodes it as JPEG: a face crop from a stored thumbnail.
 * *out is the caller's (free()). ERR_DECODE for a JPEG libvips cannot read,
 * ERR_INVAL for an empty region.
 */
int vision_jpeg_crop(const void *jpeg, size_t len, const float box[4], int max_side,
                     unsigned char **out, size_t *outlen, err_t *e);

/* ---- preprocessing (pure) ----------------------------------------------- */

/*
 * Maps a model-input pixel position (u, v) to image pixels:
 * x = x0 + u * scale, y = y0 + v * scale.
 */
typedef struct {
    float x0, y0, scale;
} vision_xform;

/*
 * Samples the rectangle [rx, rx+rw) x [ry, ry+rh) of an interleaved RGB
 * image (w x h, packed rows) into out_w x out_h float RGB (HWC, values
 * 0..255). Shrinking averages the covered source area (box filter with
 * fractional weights, so no aliasing); enlarging is bilinear. Parts of the
 * rectangle outside the image read as `pad` (3 values, 0..255). `out` must
 * hold out_w*out_h*3 floats. ERR_INVAL for non-positive sizes.
 */
int vision_resample(const uint8_t *rgb, int w, int h, float rx, float ry, float rw, float rh,
                    int out_w, int out_h, const float pad[3], float *out);

/*
 * Writes one float RGB image (HWC, 0..255, m->width x m->height) into the
 * model's input tensor as (x - mean) / std in the manifest's layout (NHWC or
 * NCHW). `tensor` holds m->width*m->height*3 floats. ERR_INVAL when the
 * manifest is not 3-channel or has a zero std.
 */
int vision_pack_tensor(const float *hwc, const model_manifest *m, float *tensor);

/*
 * Samples the rectangle [rx, rx+rw) x [ry, ry+rh) of the image (image
 * pixels; it may reach past the image, which reads as `pad`, 3 values
 * 0..255) into the model's input tensor (m->width x m->height, the
 * manifest's mean/std and layout). The same area average/bilinear as
 * vision_resample(), but on the coarsest pyramid level (see
 * vision_level_for) that still has a pixel per input pixel on both axes, so
 * its cost follows the input size rather than the image's. The result is
 * not bit-equal to vision_resample() on level 0: levels are rounded to 8
 * bits, and a level pixel an output pixel covers in part is averaged whole,
 * a slightly wider filter (on smooth, noisy content they agree to a grey
 * level or two; at a hard edge this is a little softer). Builds the pyramid
 * on first use. ERR_INVAL
 * for a manifest that is not 3-channel or has a zero std, or an empty
 * rectangle; ERR_NOMEM when a work buffer or the pyramid fails.
 */
int vision_preprocess_region(const vision_image *img, const model_manifest *m, float rx, float ry,
                             float rw, float rh, const float pad[3], float *tensor, err_t *e);

/*
 * Fills `tensor` from the whole image. With `letterbox` the image keeps its
 * aspect ratio, centred on a black square/rectangle of the input's aspect
 * (detection); without, it is resized as the manifest's input.resize says
 * (classification and embedding): stretched to the input and averaged
 * ("area", through vision_preprocess_region(), which builds the pyramid on
 * first use), stretched and sampled as TF's resizeBilinear(alignCorners)
 * does ("bilinear_align_corners", one tap per input pixel on level 0), or
 * resized as Pillow's Image.resize does, bit for bit, on level 0
 * ("squash_bicubic/bilinear" stretched; "shortest_crop_bicubic/bilinear"
 * shortest side to the input then centre-cropped, as OpenCLIP and Immich
 * feed CLIP; geometry in vision_pil_geometry()). `xf` (may be NULL) receives
 * the input->image mapping (with letterbox one scale applies to both axes;
 * without, the x scale). Errors as vision_preprocess_region().
 */
int vision_preprocess(const vision_image *img, const model_manifest *m, int letterbox,
                      float *tensor, vision_xform *xf, err_t *e);

/*
 * The geometry of m->resize's Pillow modes for a w x h image: the image is
 * resized to *rw x *rh and the input is its window at (*cx, *cy). Squash:
 * the input size, window at 0. Shortest_crop: with S = max(width, height),
 * the shorter side becomes S and the longer int(long / short * S) (Immich's
 * resize_pil, truncating, in doubles; a square image gives S x S), window
 * at int(rw / 2 - width / 2), int(rh / 2 - height / 2) (Immich's crop_pil).
 * ERR_INVAL for a non-positive size.
 */
int vision_pil_geometry(int w, int h, const model_manifest *m, int *rw, int *rh, int *cx, int *cy);

/* ---- faces -------------------------------------------------------------- */

/*
 * BlazeFace keypoints, in the model's order. "Right" is the subject's right:
 * on an upright frontal face the right eye appears on the image's LEFT.
 */
enum {
    VISION_KP_RIGHT_EYE = 0,
    VISION_KP_LEFT_EYE = 1,
    VISION_KP_NOSE = 2,
    VISION_KP_MOUTH = 3,
    VISION_KP_RIGHT_EAR = 4,
    VISION_KP_LEFT_EAR = 5,
    VISION_FACE_KPS = 6
};

typedef struct {
    float x1, y1, x2, y2;
} vision_box;

/*
 * The five-point keypoints of SCRFD (insightface, Immich), in the model's
 * order and named as they appear in the image: on an upright frontal face
 * the eye on the image's left, the one on its right, the nose tip, the
 * mouth corner on the image's left, the one on its right.
 */
enum {
    VISION_KP5_EYE_LEFT = 0,
    VISION_KP5_EYE_RIGHT = 1,
    VISION_KP5_NOSE = 2,
    VISION_KP5_MOUTH_LEFT = 3,
    VISION_KP5_MOUTH_RIGHT = 4,
    VISION_FACE_KPS5 = 5
};

typedef struct {
    vision_box box;                /* image pixels */
    float score;                   /* 0..1 */
    float kps[VISION_FACE_KPS][2]; /* (x, y) image pixels */
    /*
     * Which keypoints kps holds: 0 (or VISION_FACE_KPS) BlazeFace's six
     * (VISION_KP_*); VISION_FACE_KPS5 the five-point set of SCRFD
     * (VISION_KP5_*) in kps[0..5), kps[5] zero. Boxes and keypoints of a
     * five-point face follow insightface's convention (pixel centres at
     * integers), as Immich reports them.
     */
    int nkps;
} vision_face;

/* How many keypoints `f` carries: 6 or 5 (see vision_face.nkps). */
static inline int vision_face_nkps(const vision_face *f)
{
    return f->nkps == VISION_FACE_KPS5 ? VISION_FACE_KPS5 : VISION_FACE_KPS;
}

/*
 * Scales a face's box and keypoints by (sx, sy): between original and
 * decoded pixels (sx = width / orig_width the one way, its inverse the other).
 */
void vision_face_scale(vision_face *f, float sx, float sy);

/* Intersection over union of two boxes; 0 when either is empty. */
float vision_box_iou(const vision_box *a, const vision_box *b);

/* BlazeFace (MediaPipe "back"/full-range 256x256 model) constants. */
#define VISION_BF_INPUT 256
#define VISION_BF_ANCHORS 896 /* 16x16 cells x 2 anchors, then 8x8 cells x 6 */
#define VISION_BF_ANCHORS_16 512
#define VISION_BF_ANCHORS_8 384
#define VISION_BF_REGS 16 /* cx, cy, w, h, then 6 keypoints (x, y) */

/*
 * Fills anchors[0..896) with anchor centres in input pixels (0..256): first
 * the 16x16 grid (stride 16) with two anchors per cell, row-major, then the
 * 8x8 grid (stride 32) with six per cell. Anchors have a fixed unit size, so
 * only centres matter.
 */
void vision_bf_anchors(float anchors[VISION_BF_ANCHORS][2]);

/*
 * Decodes one BlazeFace run: score logits and regressors of both grids
 * (scores16[512], boxes16[512*16], scores8[384], boxes8[384*16]). Each anchor
 * whose sigmoid score is >= `threshold` becomes a face whose box and
 * keypoints are mapped through `xf` into image pixels. Writes at most `cap`
 * faces to `out` (the highest scores are not preferred: raise the threshold
 * when it overflows) and returns how many it wrote.
 */
int vision_bf_decode(const float *scores16, const float *boxes16, const float *scores8,
                     const float *boxes8, float threshold, const vision_xform *xf, vision_face *out,
                     int cap);

/*
 * MediaPipe-style weighted non-maximum suppression, in place: faces are taken
 * in descending score; every remaining face whose IoU with the current best
 * is >= `iou` joins its cluster, and the cluster's box and keypoints become
 * the score-weighted mean of its members, scored with the best member's
 * score. Returns the number of merged faces, now at faces[0..n) sorted by
 * descending score. Never allocates more than n entries of scratch; returns
 * ERR_NOMEM (negative) if that fails.
 */
int vision_nms_weighted(vision_face *faces, int n, float iou);

/* ---- SCRFD (insightface's RetinaFace class, as Immich runs it) ---------- */

#define VISION_SCRFD_INPUT 640 /* Immich's input_size (640, 640) */
#define VISION_SCRFD_NMS 0.4f  /* insightface's nms_thresh */
#define VISION_SCRFD_LEVELS 3  /* strides 8, 16, 32 */
#define VISION_SCRFD_ANCHORS 2 /* anchors per cell */

/*
 * insightface's fit of a w x h image into a size x size input: the image is
 * resized to new_w x new_h (the longer side becomes `size`, the other
 * int(size * ratio), truncated) and pasted at the top-left corner of a black
 * square. *det_scale = new_h / h; detections are divided by it.
 */
void vision_scrfd_letterbox(int w, int h, int size, int *new_w, int *new_h, float *det_scale);

/*
 * Resizes packed 8-bit RGB w x h to dw x dh as cv2.resize(INTER_LINEAR) does
 * on 8-bit images: source position (d + 0.5) * w / dw - 0.5 clamped to the
 * image, two taps per axis with 11-bit weights, OpenCV's fixed-point
 * rounding (see scrfd.c); an exact halving is OpenCV's 2x2 mean. No
 * antialiasing: a shrink by more than 2 skips pixels, as OpenCV does. `dst`
 * holds dw*dh*3 bytes. ERR_INVAL for non-positive sizes, ERR_NOMEM.
 */
int vision_resize_linear(const uint8_t *src, int w, int h, uint8_t *dst, int dw, int dh);

/*
 * The SCRFD input of `img` (its decoded pixels) as insightface makes it:
 * vision_scrfd_letterbox to m->width (square inputs only), the resize of
 * vision_resize_linear, a black canvas, then (RGB - mean) / std in the
 * manifest's layout. `tensor` holds m->width*m->height*3 floats;
 * *det_scale receives new_h / img->height. ERR_INVAL for a non-square or
 * non-RGB manifest or a zero std, ERR_NOMEM.
 */
int vision_scrfd_blob(const vision_image *img, const model_manifest *m, float *tensor,
                      float *det_scale, err_t *e);

/*
 * Decodes one SCRFD run on a size x size input: for each stride s of 8, 16,
 * 32 (level i), score[i] holds A = (size/s)^2 * 2 scores, bbox[i] A x 4
 * distances, kps[i] A x 10 offsets, anchors row-major over the grid with two
 * anchors per cell at the cell's corner (x*s, y*s). Every anchor with score
 * >= `threshold` becomes a five-point face: box (cx - d0 s, cy - d1 s,
 * cx + d2 s, cy + d3 s), keypoint k (cx + o[2k] s, cy + o[2k+1] s), all
 * divided by det_scale (in float, as insightface's float32 arrays). Faces
 * come in anchor order (stride 8 first). Writes at most `cap`; returns how
 * many anchors passed (which may exceed cap).
 */
int vision_scrfd_decode(const float *const score[VISION_SCRFD_LEVELS],
                        const float *const bbox[VISION_SCRFD_LEVELS],
                        const float *const kps[VISION_SCRFD_LEVELS], int size, float threshold,
                        float det_scale, vision_face *out, int cap);

/*
 * insightface's hard NMS, in place: faces sorted by descending score
 * (stable: ties keep their order), then each kept face drops every later one
 * whose overlap with it is > `iou`, overlap computed with areas
 * (x2 - x1 + 1) * (y2 - y1 + 1) as insightface does. Returns the number
 * kept, now at faces[0..n) by descending score; ERR_NOMEM (negative) when
 * its scratch cannot be allocated.
 */
int vision_nms_hard(vision_face *faces, int n, float iou);

typedef struct {
    float score_threshold; /* 0 = 0.75 (BlazeFace), 0.7 (SCRFD, Immich's minScore) */
    float iou_threshold;   /* weighted-NMS overlap; 0 = 0.3 */
    int no_tiles;          /* 1: only the whole image (fast, misses small faces) */
    int max_faces;         /* 0 = 256; extra faces (lowest scores) are dropped */
    int64_t deadline_ms;   /* clock_mono_ms() after which views fail ERR_TIMEOUT; 0 = none */
} vision_detect_opts;

/* One square view the detector runs on, in image pixels. */
typedef struct {
    float x0, y0, side;
    int whole; /* the letterboxed whole image: no tile-edge filter */
} vision_view;

#define VISION_MAX_VIEWS 64

/*
 * The views vision_detect_faces() runs on a w x h image, in order: the whole
 * image letterboxed to a square, then, with `tiles` and a longest side of at
 * least 3 x 256, square tiles of a third of the longest side overlapping
 * their neighbours by at least an eighth. Writes at most `cap` views and
 * returns how many it wrote (1 + 12 for 1920x1280); 0 for a non-positive
 * size or cap.
 */
int vision_detect_plan(int w, int h, int tiles, vision_view *views, int cap);

/*
 * Detects faces with the face_detection model `det`, dispatching on its
 * manifest family. Family "scrfd" (vision_scrfd_*): one view, the whole
 * image fitted as insightface does, hard NMS at 0.4, five-point faces, as
 * Immich; opts->iou_threshold and no_tiles do not apply. Otherwise
 * BlazeFace (a manifest
 * with roles scores_16, boxes_16, scores_8, boxes_8 and a 256x256 input).
 * The detector sees the views of vision_detect_plan() (never smaller than
 * the input, so no tile is enlarged), so that faces from ~1/40 of the
 * image's longest side upwards are found; all detections are merged by
 * weighted NMS. Views are sampled with vision_preprocess_region(), so the
 * image's pyramid is built on first use. Boxes and keypoints are in ORIGINAL
 * image pixels (orig_width x orig_height), sorted by descending score.
 * `opts` may be NULL. On success `*faces` (NULL when none) is owned by the
 * caller and freed with free(); `*nfaces` >= 0. Fails with ERR_INVAL for a
 * model that is not a BlazeFace detector, ERR_NOMEM, or with infer_run()'s
 * errors.
 */
int vision_detect_faces(infer_model *det, const vision_image *img, const vision_detect_opts *opts,
                        vision_face **faces, int *nfaces, err_t *e);

/*
 * Shareable detection: the same work as vision_detect_faces() (which is
 * vision_detect_begin + vision_detect_finish), split so that other threads
 * can run some of the views while the owner runs the rest. The result is
 * bit-identical to the serial one whoever runs which view: each view's
 * detections are kept apart and merged in view order.
 *
 *   owner:   vision_detect_begin -> (publish t) -> vision_detect_work(t, 0)
 *            -> (unpublish t) -> vision_detect_finish
 *   helper:  (while t is published, under the publisher's lock)
 *            vision_detect_retain(t) -> (unlock) vision_detect_work(t, n)
 *            -> vision_detect_release(t)
 *
 * Lifetime: the task is reference-counted. begin returns it with the owner's
 * reference, which finish drops; a helper holds its own from retain to
 * release, so it never touches freed memory whenever it leaves. A helper
 * must retain t while the owner's reference is known to be alive (the
 * publisher's lock). The image and the model are only read while a view
 * runs, and finish returns only after every view has finished, so they must
 * stay valid until finish returns and no longer: a work() call after that
 * finds no view left and touches neither.
 */
typedef struct vision_detect_task vision_detect_task;

/*
 * Checks the model, plans the views and builds the image's pyramid (so that
 * helpers do not race to build it). `*out` carries the owner's reference:
 * end it with vision_detect_finish() exactly once. Fails as
 * vision_detect_faces() (ERR_INVAL, ERR_NOMEM) with `*out` NULL.
 */
int vision_detect_begin(infer_model *det, const vision_image *img, const vision_detect_opts *opts,
                        vision_detect_task **out, err_t *e);

/*
 * Any thread holding a reference: claims the next unclaimed view (atomic
 * counter), runs it with this call's own buffers and stores its detections
 * in the task, until no view is left or `max_views` views ran (<= 0: no
 * limit). Returns the number of views it ran (0 when none was left). A
 * failed view records its error in the task (the first one wins; views
 * claimed after it are skipped) for finish to report.
 */
int vision_detect_work(vision_detect_task *t, int max_views);

/* Views not yet claimed (a hint: it only ever decreases). */
int vision_detect_pending(const vision_detect_task *t);

/* Takes / drops a reference; the last one frees the task. release(NULL) is a no-op. */
void vision_detect_retain(vision_detect_task *t);
void vision_detect_release(vision_detect_task *t);

/*
 * Owner: runs every view still unclaimed, waits for the views helpers
 * claimed, merges all detections in view order (weighted NMS), scales them
 * to original pixels and drops the owner's reference. Results and errors as
 * vision_detect_faces(): `*faces` (NULL when none) is the caller's to free().
 */
int vision_detect_finish(vision_detect_task *t, vision_face **faces, int *nfaces, err_t *e);

/* ---- alignment (pure) --------------------------------------------------- */

/*
 * ArcFace's five-point template (insightface's arcface_dst) for a 112x112
 * crop, in VISION_KP5_* order.
 */
extern const float vision_arcface_template5[5][2];

/*
 * Samples the out_size x out_size crop of `img` (decoded pixels) whose pixel
 * (u, v) is image pixel M^-1 (u, v) exactly as cv2.warpAffine(INTER_LINEAR,
 * BORDER_CONSTANT 0) does on 8-bit images: pixel centres at integers, the
 * inverse map in double, source positions in 1/32 pixel, bilinear weights in
 * 1/32768, taps outside the image black. Level 0 only (no pyramid): what
 * insightface's norm_crop sees. ERR_INVAL for out_size < 1 or a singular
 * map.
 */
int vision_warp_affine_cv(const vision_image *img, const float M[2][3], int out_size,
                          uint8_t *out_rgb, err_t *e);

/*
 * Least-squares similarity transform (rotation, uniform scale, translation;
 * no reflection) mapping src[i] to dst[i], i < n (n >= 2), as the 2x3 matrix
 * M: dst = M * (x, y, 1). Umeyama's closed form in 2-D. ERR_INVAL when the
 * source points are all coincident.
 */
int vision_similarity(const float (*src)[2], const float (*dst)[2], int n, float M[2][3]);

/*
 * The canonical positions of the right eye, left eye, nose tip and mouth
 * centre in a 112x112 crop: ArcFace's template, with the mouth centre taken
 * as the mean of its two mouth corners.
 */
extern const float vision_align_template[4][2];

/*
 * Warps the face with BlazeFace keypoints `kps` (in pixels of `img` as
 * decoded, i.e. img->width x img->height: detections come in original
 * pixels and must be scaled by width / orig_width first) onto an
 * out_size x out_size RGB crop (packed, out_size*out_size*3 bytes at
 * `out_rgb`) where the eyes, nose and mouth land on vision_align_template
 * scaled by out_size/112 (vision_face_map of a default "align" manifest,
 * then vision_warp_rgb). One bilinear tap per output pixel, taken on the
 * pyramid level that leaves a shrink in [1, 2) (vision_level_for), so a
 * large face is averaged, not aliased; outside the image is black. Taps
 * inside the image use 8-bit fixed-point weights (within a grey level of
 * exact bilinear), those reaching past it float. Builds
 * the pyramid on first use. ERR_INVAL for out_size < 8 or degenerate
 * keypoints, ERR_NOMEM when the pyramid cannot be built.
 */
int vision_align_face(const vision_image *img, const float kps[VISION_FACE_KPS][2], int out_size,
                      uint8_t *out_rgb, err_t *e);

/*
 * Turns an aligned crop (size x size RGB, size == m->width == m->height)
 * into the embedder's input tensor (m->width*m->height*3 floats) with the
 * manifest's mean/std and layout, without allocating. ERR_INVAL on a size
 * mismatch, a manifest that is not 3-channel or has a zero std.
 */
int vision_face_tensor(const uint8_t *crop, int size, const model_manifest *m, float *tensor,
                       err_t *e);

/*
 * The map from pixels of the decoded image to the face embedder's input
 * (out = M * (x, y, 1)) for face `f`, whose box and keypoints are in pixels
 * of the decoded image (detections come in original pixels: scale them by
 * width / orig_width first), as the embedder's manifest says faces are cut
 * out ("crop", see infer/manifest.h): the similarity that puts the eyes,
 * nose and mouth on the template (method "align"; a five-point face is
 * fitted by its five points onto vision_arcface_template5 scaled to the
 * input, as is any face under "align5"), or the upright square of
 * side crop_scale * max(box width, height) around the box centre moved down
 * by crop_shift_y sides (method "box"). ERR_INVAL for an input that is not
 * square or narrower than 8, degenerate keypoints or an empty box.
 */
int vision_face_map(const model_manifest *m, const vision_face *f, float M[2][3], err_t *e);

/*
 * Samples the out_size x out_size crop of `img` whose pixel (u, v) is image
 * pixel M^-1 (u, v) into packed RGB at `out_rgb` (out_size*out_size*3
 * bytes): one bilinear tap per output pixel on the pyramid level that leaves
 * a shrink in [1, 2), outside the image black, as vision_align_face().
 * Builds the pyramid on first use. ERR_INVAL for out_size < 8 or a singular
 * map, ERR_NOMEM when the pyramid cannot be built.
 */
int vision_warp_rgb(const vision_image *img, const float M[2][3], int out_size, uint8_t *out_rgb,
                    err_t *e);

/*
 * vision_warp_rgb() at m->width followed by vision_face_tensor(), fused:
 * writes the embedder's input tensor (m->width*m->height*3 floats, the
 * manifest's mean/std and layout) directly, without the intermediate crop
 * and without allocating. The values equal those of the two calls. Builds
 * the pyramid on first use. Under crop method "align5" (CROP_ALIGN5) the
 * crop is vision_warp_affine_cv()'s instead (Immich's norm_crop; it
 * allocates the crop). ERR_INVAL for a singular map, a non-square input
 * narrower than 8, a manifest that is not 3-channel or has a zero std;
 * ERR_NOMEM when the pyramid cannot be built.
 */
int vision_warp_tensor(const vision_image *img, const float M[2][3], const model_manifest *m,
                       float *tensor, err_t *e);

#endif
