/*
 * vision/jpeg.h — internal to vision/: a JPEG decoded by libjpeg-turbo
 * straight into the image's buffer (vision/jpeg.c), for decode.c.
 */
#ifndef INFERD_VISION_JPEG_H
#define INFERD_VISION_JPEG_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "vision/vision.h"

/* Returned by vision__jpeg_decode for a JPEG it leaves to libvips. */
#define VISION_JPEG_FALLBACK 1

/*
 * Decodes the JPEG at `path` (or the `len` bytes at `buf` when path is NULL)
 * at 1/`denom` of its size (1, 2, 4 or 8, libjpeg's DCT scaling), to 8-bit
 * RGB turned upright by EXIF `orient` (1..8; others are taken as 1), with
 * libjpeg's settings libvips' loader uses, so the pixels are libvips' bit
 * for bit. A warning from libjpeg (corrupt data, a premature end) fails, as
 * libvips' fail_on=warning does. `deadline_ms` (clock_mono_ms(), 0 = none)
 * is checked every 64 rows.
 *
 * Returns ERR_OK with *out the caller's (vision_image_free()), its
 * orig_width/orig_height left 0 for the caller; VISION_JPEG_FALLBACK,
 * having decoded nothing, for a JPEG in CMYK or YCCK (Adobe) or with
 * neither 1 nor 3 components; ERR_DECODE with libjpeg's message;
 * ERR_TIMEOUT; ERR_NOMEM.
 */
int vision__jpeg_decode(const char *path, const void *buf, size_t len, int denom, int orient,
                        int64_t deadline_ms, vision_image **out, err_t *e);

#endif
