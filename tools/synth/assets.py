# SPDX-License-Identifier: AGPL-3.0-or-later
"""What the synthetic scenes are made of: the vocabulary shared by the scene
script (inside Blender), the post-processing and the training split, and the
third-party assets read at render time from Debian packages.

No asset is copied into this repository or into the rendered data set's
manifests beyond its path; the licence of every asset is listed here and in
NOTICE.
"""

import glob
import os

# Camera families as users mount them, with their drawing weights. The family
# in HELD_OUT_FAMILIES is never used for training: the validation split's
# synthetic healthy frames from it measure how the model does on a camera
# setup it has not seen.
CAMERA_FAMILIES = {
    "frame_front": 4,
    "bed_mounted": 2,
    "enclosure_corner": 3,
    "top_down": 1,
    "nozzle_cam": 1,
    "desk_side": 3,
}
HELD_OUT_FAMILIES = ("top_down",)

FAILURE_KINDS = {
    "spaghetti": 5,
    "nest": 2,
    "blob": 1,
    "detached": 2,
    "stringing": 1,
    "air": 2,
}

# Debian's prusa-slicer package (AGPL-3.0; /usr/share/doc/prusa-slicer/copyright):
# printer bed models and bed textures from its printer profiles, and the
# sample shapes it offers in its "add shape" gallery.
PRUSA_SLICER = "/usr/share/PrusaSlicer"
ASSET_PACKAGES = {
    "prusa-slicer": {
        "licence": "AGPL-3.0 (Debian package prusa-slicer; upstream PrusaSlicer by Prusa Research)",
        "used": "profiles/*/*.stl (bed models), profiles/*/bed*.png and bedtexture*.png (bed textures), "
                "shapes/*.stl (sample models)",
    },
}


def _files(pattern):
    return sorted(glob.glob(os.path.join(PRUSA_SLICER, pattern)))


def bed_models():
    return [p for p in _files("profiles/*/*.stl") if "sl1" not in os.path.basename(p)]


def bed_textures():
    return [p for p in _files("profiles/*/*.png")
            if os.path.basename(p).startswith(("bed-", "bedtexture"))]


def shape_models():
    return _files("shapes/*.stl")


def check():
    """Raises with the package to install when an asset group is missing."""
    missing = [name for name, files in (("bed models", bed_models()), ("bed textures", bed_textures()),
                                        ("shapes", shape_models())) if not files]
    if missing:
        raise SystemExit("synth: missing %s under %s; install Debian's prusa-slicer package"
                         % (", ".join(missing), PRUSA_SLICER))
