#!/usr/bin/env python3
"""CLIP image preprocessing: inferd against Pillow as Immich's ML service uses it.

Immich's machine-learning service (immich_ml/models/clip/visual.py and
transforms.py) feeds a CLIP visual model from preprocess_cfg.json this way:
decode with Pillow (Image.open, load, convert("RGB")); resize_mode
"shortest" (the default): scale so that the shorter side equals size, the
longer int(long / short * size), with Image.resize and the "interpolation"
filter, then crop size x size at int(w / 2 - size / 2), int(h / 2 - size / 2);
"squash": Image.resize to size x size; then x / 255, (x - mean) / std, CHW.

This test does exactly that here with Pillow and numpy, and compares it with
the tensor inferd makes from the same file (tests/pillow/preprocess_dump.c:
vision_decode_file, the manifest clip.c synthesises for a CLIP directory,
vision_preprocess) for several preprocess_cfg.json variants, on the
face-api photos (landscape JPEGs), a portrait and an enlarged small image
(lossless PNGs made here from them) and a 1440x1080 JPEG (Immich's preview
size). Differences are in 0..255 units (|tensor difference| * std * 255).

Two comparisons per case:
  resampler  Pillow started from inferd's own decoded pixels: the resize is
             Pillow's arithmetic in fixed point, so every value must agree
             up to float32 rounding of the normalisation (max <= 0.01).
  file       Pillow decodes the file itself, as Immich does: what is left is
             the decoder (libvips and Pillow both use libjpeg; a grey level
             where IDCT or upsampling differ). Pass: max <= 2 after Pillow's
             8-bit rounding, mean <= 0.1.
Also checked: absent interpolation/resize_mode mean shortest + bicubic, and
an unknown value fails naming the file and the key.

Exit status: 0 pass, 1 fail, 77 skipped (no python3 with PIL and numpy: the
script re-runs itself with /usr/bin/python3, Debian's, when the python3 on
PATH lacks them).
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from PIL import Image
except ImportError:
    DEB = "/usr/bin/python3"
    if os.path.realpath(sys.executable) != os.path.realpath(DEB) and os.access(DEB, os.X_OK) \
            and not os.environ.get("PILLOW_PARITY_REEXEC"):
        os.environ["PILLOW_PARITY_REEXEC"] = "1"
        os.execv(DEB, [DEB] + sys.argv)
    print("pillow_parity: SKIP: python3-pil / python3-numpy not installed", flush=True)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
DUMP = os.environ.get("PREPROCESS_DUMP", os.path.join(SRC, "build", "tests", "preprocess_dump"))
TESTDATA = os.environ.get("INFERD_TESTDATA", os.path.join(SRC, ".deps", "testdata"))

RESAMPLER_MAX = 0.01
FILE_MAX = 2.0
FILE_MEAN = 0.1

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]

FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}

failures = []


def fail(msg):
    print("pillow_parity: FAIL: %s" % msg, flush=True)
    failures.append(msg)


def immich_tensor(img, cfg):
    """What Immich's OpenClipVisualEncoder.transform feeds the model (CHW float32)."""
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, list) else size
    filt = FILTERS[cfg.get("interpolation", "bicubic")]
    mode = cfg.get("resize_mode", "shortest")
    if mode == "squash":
        img = img.resize((size, size), resample=filt)
    else:
        w, h = img.size
        if w < h:
            img = img.resize((size, int((h / w) * size)), resample=filt)
        else:
            img = img.resize((int((w / h) * size), size), resample=filt)
        left = int(img.size[0] / 2 - size / 2)
        top = int(img.size[1] / 2 - size / 2)
        img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.float32) / 255.0
    mean = np.array(cfg.get("mean", OPENAI_MEAN), dtype=np.float32)
    std = np.array(cfg.get("std", OPENAI_STD), dtype=np.float32)
    x *= 1.0 / std
    x -= mean / std
    return x.transpose(2, 0, 1)


def run_dump(clip_dir, image, tmp):
    out = os.path.join(tmp, "t.f32")
    rgb = os.path.join(tmp, "img.rgb")
    p = subprocess.run([DUMP, "--clip-dir", clip_dir, "--rgb", rgb, image, out],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return None, None, None, p.stderr.strip()
    info = json.loads(p.stdout)
    w, h = info["input"]
    t = np.fromfile(out, dtype=np.float32).reshape(3, h, w)
    iw, ih = info["image"]
    pix = np.fromfile(rgb, dtype=np.uint8).reshape(ih, iw, 3)
    return info, t, pix, None


def diff255(a, b, std):
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return d * (np.array(std, dtype=np.float64)[:, None, None] * 255.0)


def make_clip_dir(root, name, cfg):
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "visual"), exist_ok=True)
    if cfg is not None:
        with open(os.path.join(d, "visual", "preprocess_cfg.json"), "w") as f:
            json.dump(cfg, f)
    return d


def main():
    if not os.access(DUMP, os.X_OK):
        print("pillow_parity: FAIL: no %s (build the preprocess_dump target)" % DUMP)
        return 1
    photos = sorted(os.path.join(TESTDATA, "faceapi", f)
                    for f in os.listdir(os.path.join(TESTDATA, "faceapi")) if f.endswith(".jpg"))
    if not photos:
        print("pillow_parity: FAIL: no photos in %s/faceapi (scripts/setup.sh testdata)" % TESTDATA)
        return 1
    base = {"size": [224, 224], "mode": "RGB", "mean": OPENAI_MEAN, "std": OPENAI_STD}
    cfgs = {
        "shortest-bicubic": dict(base, interpolation="bicubic", resize_mode="shortest"),
        "shortest-bilinear": dict(base, interpolation="bilinear", resize_mode="shortest"),
        "squash-bicubic": dict(base, interpolation="bicubic", resize_mode="squash"),
        "shortest-bicubic-336": dict(base, size=[336, 336], interpolation="bicubic",
                                     resize_mode="shortest"),
    }
    expect_resize = {"shortest-bicubic": "shortest_crop_bicubic",
                     "shortest-bilinear": "shortest_crop_bilinear",
                     "squash-bicubic": "squash_bicubic",
                     "shortest-bicubic-336": "shortest_crop_bicubic"}
    with tempfile.TemporaryDirectory(prefix="pillow-parity-") as tmp:
        # Extra shapes, lossless so that both sides decode the same pixels.
        with Image.open(photos[0]) as im:
            im = im.convert("RGB")
            portrait = os.path.join(tmp, "portrait.png")
            im.transpose(Image.Transpose.ROTATE_90).save(portrait)
            small = os.path.join(tmp, "small-150x100.png")
            im.resize((150, 100), Image.Resampling.LANCZOS).save(small)
            preview = os.path.join(tmp, "preview-1440x1080.jpg")
            w, h = im.size
            cw = h * 4 // 3
            im.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h)).resize(
                (1440, 1080), Image.Resampling.BICUBIC).save(preview, quality=90)
        images = photos + [portrait, small, preview]

        dirs = {k: make_clip_dir(tmp, k, v) for k, v in cfgs.items()}
        worst_res, worst_file, ncases = 0.0, 0.0, 0
        for image in images:
            with Image.open(image) as im:
                im.load()
                ref_img = im.convert("RGB") if im.mode != "RGB" else im.copy()
            for name, cfg in cfgs.items():
                info, t, pix, err = run_dump(dirs[name], image, tmp)
                tag = "%s %s" % (os.path.basename(image), name)
                if err is not None:
                    fail("%s: preprocess_dump: %s" % (tag, err))
                    continue
                if info["resize"] != expect_resize[name]:
                    fail("%s: resize %s, expected %s" % (tag, info["resize"], expect_resize[name]))
                same = immich_tensor(Image.fromarray(pix, "RGB"), cfg)
                own = immich_tensor(ref_img, cfg)
                if t.shape != same.shape:
                    fail("%s: tensor shape %s, Pillow's %s" % (tag, t.shape, same.shape))
                    continue
                dr = diff255(t, same, cfg["std"])
                df = diff255(t, own, cfg["std"]) if own.shape == t.shape else None
                ncases += 1
                line = "%-28s %-21s image %4dx%-4d resampler max %.4f mean %.5f" % (
                    os.path.basename(image), name, info["image"][0], info["image"][1],
                    dr.max(), dr.mean())
                if df is not None:
                    line += " | file max %.3f mean %.4f" % (df.max(), df.mean())
                print(line, flush=True)
                worst_res = max(worst_res, dr.max())
                if dr.max() > RESAMPLER_MAX:
                    fail("%s: resampler max %.4f > %g" % (tag, dr.max(), RESAMPLER_MAX))
                if (pix.shape[1], pix.shape[0]) != ref_img.size:
                    fail("%s: inferd decoded %dx%d, Pillow %dx%d" % (
                        tag, pix.shape[1], pix.shape[0], ref_img.size[0], ref_img.size[1]))
                    continue
                worst_file = max(worst_file, df.max())
                if df.max() > FILE_MAX or df.mean() > FILE_MEAN:
                    fail("%s: file max %.3f mean %.4f (limits %g, %g)" % (
                        tag, df.max(), df.mean(), FILE_MAX, FILE_MEAN))

        # Absent keys: OpenCLIP's defaults (shortest, bicubic).
        d = make_clip_dir(tmp, "nokeys", {"size": 224, "mean": OPENAI_MEAN, "std": OPENAI_STD})
        info, _, _, err = run_dump(d, photos[0], tmp)
        if err is not None or info["resize"] != "shortest_crop_bicubic":
            fail("no interpolation/resize_mode: %s" % (err or info["resize"]))
        d = make_clip_dir(tmp, "nocfg", None)
        info, _, _, err = run_dump(d, photos[0], tmp)
        if err is not None or info["resize"] != "shortest_crop_bicubic":
            fail("no preprocess_cfg.json: %s" % (err or info["resize"]))
        # Unknown values: refused, naming the file and the key.
        for key, val in (("interpolation", "lanczos"), ("resize_mode", "longest")):
            d = make_clip_dir(tmp, "bad-" + key, dict(base, **{key: val}))
            info, _, _, err = run_dump(d, photos[0], tmp)
            want = os.path.join(d, "visual", "preprocess_cfg.json")
            if err is None or want not in err or '"%s"' % key not in err:
                fail("%s = %s: expected an error naming %s and the key, got %r" % (
                    key, val, want, err if err is not None else info))
            else:
                print("%s = %s refused: %s" % (key, val, err), flush=True)
    print("pillow_parity: %d cases; worst resampler %.4f, worst file %.3f (0..255 units)" % (
        ncases, worst_res, worst_file))
    if failures:
        print("pillow_parity: %d failure(s)" % len(failures))
        return 1
    print("pillow_parity: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
