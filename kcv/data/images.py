"""EXIF orientation: train, validate, predict and calibrate on the picture people see.

A camera stores a portrait photo as landscape pixels plus an EXIF ``Orientation`` tag
(TIFF 6.0 tag 274, values 1-8); viewers apply it, TensorFlow's decoders do not. A mask
drawn on the photo as shown would then not match the decoded image. Every reader in kcv
applies the tag, through the two halves of this module that agree by construction:

* :func:`exif_orientation_tf` / :func:`apply_orientation_tf` inside the ``tf.data`` decode
  step: the tag is parsed from the bytes already read, in graph ops (no Python in the
  input pipeline, so decoding stays parallel);
* :func:`exif_orientation` / :func:`open_oriented` with PIL, for validation (sizes) and for
  ``kcv predict`` / ``explain`` / ``export --calib-data``.

Only JPEG files are oriented: cameras write the tag there, and it is where both halves
read it (TensorFlow decodes PNG/BMP/GIF without metadata, and PIL's PNG ``eXIf`` support
would make the two disagree).
"""

from __future__ import annotations

from pathlib import Path

ORIENTATION_TAG = 0x0112
# Bytes of a JPEG searched for the EXIF segment: APP segments precede the image data, and
# an APP1 EXIF segment is at most 64 KiB (JPEG's segment length is 16 bits), so 128 KiB
# covers it after a JFIF APP0 and other small segments.
HEAD_BYTES = 1 << 17
MAX_SEGMENTS = 32
MAX_IFD_ENTRIES = 256
SWAPS_AXES = (5, 6, 7, 8)  # orientations that turn a w x h image into h x w


# --- PIL side -------------------------------------------------------------------------------

def exif_orientation(image) -> int:
    """The EXIF orientation (1-8) of an open PIL image; 1 for non-JPEG or no/invalid tag."""
    if getattr(image, "format", None) != "JPEG":
        return 1
    try:
        code = int(image.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # a damaged EXIF block is not the image's fault: show it as stored
        return 1
    return code if 1 <= code <= 8 else 1


def oriented_size(size: tuple, code: int) -> tuple:
    """``(w, h)`` of an image of stored ``size`` once ``code`` is applied."""
    return (size[1], size[0]) if code in SWAPS_AXES else tuple(size)


def open_oriented(path):
    """``uint8 [h, w, 3]`` RGB pixels of an image file, EXIF orientation applied (JPEG)."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(Path(path)) as im:
        if exif_orientation(im) != 1:
            im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"))


# --- TensorFlow side ------------------------------------------------------------------------

def exif_orientation_tf(raw):
    """EXIF orientation (int32 scalar, 1-8) of encoded image bytes, in TensorFlow ops.

    Walks the JPEG segments to the APP1 ``Exif`` one, then its TIFF header and IFD0 for tag
    274. Anything else (not a JPEG, no EXIF, a truncated or garbled block) gives 1: every
    read past the searched head lands on zero padding instead of failing.
    """
    import tensorflow as tf

    n = tf.minimum(tf.strings.length(raw), HEAD_BYTES)
    head = tf.io.decode_raw(tf.strings.substr(raw, 0, n), tf.uint8)
    # The segment walk below is a tf.while_loop: ~15 ms an image on one core, which made it
    # the input pipeline's bottleneck (74 img/s at 224 px; benchmarks/RESULTS.md). It runs
    # only when the head holds an APP1 "Exif\0\0" signature at all, found with 6 vectorised
    # compares; a file without one is "as stored" (1), as the walk would have said.
    return tf.cond(_has_exif_signature(head), lambda: _walk_exif(head), lambda: tf.constant(1))


def _has_exif_signature(head):
    """Whether ``FF E1 ?? ?? Exif\0\0`` (an APP1 marker, its length, the EXIF name) occurs
    anywhere in ``head``: the one thing the segment walk can find a tag in."""
    import tensorflow as tf

    signature = b"\xff\xe1\0\0Exif\0\0"
    span = tf.maximum(tf.shape(head)[0] - len(signature) + 1, 0)  # start positions to try
    hit = tf.ones([span], tf.bool)
    for k, byte in enumerate(signature):
        if k not in (2, 3):  # the segment length: any value
            hit = tf.logical_and(hit, tf.equal(head[k:k + span], byte))
    return tf.reduce_any(hit)


def _walk_exif(head):
    import tensorflow as tf

    b = tf.cast(tf.concat([head, tf.zeros([16], tf.uint8)], 0), tf.int32)
    last = tf.shape(b)[0] - 1  # a zero byte: reads past the end see zeros

    def at(i):
        return tf.gather(b, tf.clip_by_value(i, 0, last))

    def segment_step(k, pos, tiff):
        marker = at(pos + 1)
        is_exif = tf.logical_and(tf.equal(marker, 0xE1), tf.reduce_all(tf.equal(
            tf.stack([at(pos + 4 + j) for j in range(6)]), tf.constant(list(b"Exif\0\0"), tf.int32))))
        length = at(pos + 2) * 256 + at(pos + 3)
        step = tf.where(tf.equal(marker, 0xFF), 1, 2 + length)  # 0xFF fill bytes
        return k + 1, tf.where(is_exif, pos, pos + step), tf.where(is_exif, pos + 10, tiff)

    def segment_cond(k, pos, tiff):
        marker = at(pos + 1)
        return tf.logical_and(tf.logical_and(k < MAX_SEGMENTS, tiff < 0), tf.logical_and(
            tf.equal(at(pos), 0xFF), tf.logical_not(tf.logical_or(tf.equal(marker, 0xDA),
                                                                  tf.equal(marker, 0xD9)))))

    is_jpeg = tf.logical_and(tf.equal(at(0), 0xFF), tf.equal(at(1), 0xD8))
    _, _, tiff = tf.while_loop(segment_cond, segment_step, (0, tf.constant(2), tf.constant(-1)))
    little = tf.equal(at(tiff), 0x49)  # "II" little-endian, "MM" big-endian

    def u16(p):
        return tf.where(little, at(p) + 256 * at(p + 1), 256 * at(p) + at(p + 1))

    def u32(p):
        hi, lo = tf.where(little, u16(p + 2), u16(p)), tf.where(little, u16(p), u16(p + 2))
        return tf.where(hi > 0x7FFF, -1, hi * 65536 + lo)  # beyond any head: not found

    ifd = tiff + u32(tiff + 4)
    entries = tf.minimum(u16(ifd), MAX_IFD_ENTRIES)

    def entry_step(i, code):
        e = ifd + 2 + 12 * i
        return i + 1, tf.where(tf.equal(u16(e), ORIENTATION_TAG), u16(e + 8), code)

    _, code = tf.while_loop(lambda i, code: tf.logical_and(i < entries, code < 0), entry_step,
                            (tf.constant(0), tf.constant(-1)))
    found = tf.logical_and(tf.logical_and(is_jpeg, tiff >= 0), tf.logical_and(code >= 1, code <= 8))
    return tf.where(found, code, 1)


def apply_orientation_tf(image, code):
    """``image [h, w, c]`` transformed as EXIF orientation ``code`` says (as PIL's
    ``ImageOps.exif_transpose`` does)."""
    import tensorflow as tf

    branches = [
        lambda: image,                                        # 1 as stored
        lambda: tf.image.flip_left_right(image),              # 2 mirrored
        lambda: tf.image.rot90(image, 2),                     # 3 rotated 180
        lambda: tf.image.flip_up_down(image),                 # 4 mirrored vertically
        lambda: tf.image.transpose(image),                    # 5 transposed
        lambda: tf.image.rot90(image, 3),                     # 6 rotated 90 clockwise to view
        lambda: tf.image.rot90(tf.image.transpose(image), 2),  # 7 transversed
        lambda: tf.image.rot90(image, 1),                     # 8 rotated 90 counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(code, 1, 8) - 1, branches)
