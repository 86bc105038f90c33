/*
 * vision/codecs.h — internal to vision/: the decoders decode.c calls
 * directly instead of through libvips, where that saves work libvips would
 * do and throw away: a JPEG by libjpeg-turbo (vision/jpeg.c), a HEIC at half
 * size from libheif's YCbCr planes (vision/heif.c).
 */
#ifndef INFERD_VISION_CODECS_H
#define INFERD_VISION_CODECS_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "vision/vision.h"

/* Returned by the decoders below for an image they leave to libvips. */
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

/*
 * Decodes the primary image of the HEIF (HEIC) at `path` (or the `len` bytes
 * at `buf`) at exactly half its width and height: each 2x2 luma block
 * averaged with the 4:2:0 chroma sample that covers it, converted with the
 * image's nclx matrix and range (BT.601 full range without one, as
 * libheif), then turned upright by EXIF `orient` as vision__jpeg_decode.
 * Returns as vision__jpeg_decode; VISION_JPEG_FALLBACK, having returned
 * nothing, for an image with alpha, more than 8 bits, an odd side, chroma
 * other than 4:2:0, a matrix other than BT.601/709/2020, or one libheif
 * cannot read (libvips then reports it).
 */
int vision__heif_decode_half(const char *path, const void *buf, size_t len, int orient,
                             int64_t deadline_ms, vision_image **out, err_t *e);

/*
 * `src` (w x h packed RGB) turned upright per EXIF orientation `o` (2..8)
 * into `dst`, which is h x w for o >= 5 and must not overlap `src`.
 */
void vision__orient_rgb(const uint8_t *src, int w, int h, int o, uint8_t *dst);

/*
 * Makes `rgb` (w x h packed RGB, malloc'd; always taken, freed on failure)
 * into *out, turned upright by EXIF `orient` (2..8; others: as it is), its
 * orig size left 0. ERR_OK, or ERR_NOMEM with *out NULL.
 */
int vision__image_adopt(uint8_t *rgb, int w, int h, int orient, vision_image **out, err_t *e);

#endif
