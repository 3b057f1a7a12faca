# SPDX-License-Identifier: AGPL-3.0-or-later
"""Renders synthetic printer-camera frames in Blender (Cycles on the CPU).

Runs inside Blender, never on its own:

    blender -b --factory-startup -noaudio -P tools/synth/scene.py -- \
        --out build/synth/raw --seed 1 --first 0 --count 20

Every image is a pure function of (seed, index): a printer (bed, frame, print
head), a print at some stage, optionally a failure, clutter, lights and a camera
as users mount them are all drawn from one random.Random seeded with both. For
each index it writes <out>/<index>.png (the render), <index>_mask.png (object
index of the failure objects, for exact boxes of what is visible) and
<index>.json (everything drawn). An index whose .json exists is skipped, so an
interrupted run continues where it stopped.

--sequence renders whole prints instead: one scene per sequence, the part
growing frame by frame, then, from a known frame, failing.

Units are centimetres. Camera effects (noise, white balance, JPEG, IR) are
added afterwards by post.py, which also turns the masks into boxes.
"""

import argparse
import json
import math
import os
import random
import struct
import sys

import bmesh
import bpy
from mathutils import Euler, Matrix, Vector

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import assets  # noqa: E402  (tools/synth/assets.py: the asset list)

# --------------------------------------------------------------------------
# Scene vocabulary: what can be drawn, with weights. post.py and the split
# use the same names, so they live in one place (tools/synth/assets.py).
CAMERA_FAMILIES = assets.CAMERA_FAMILIES
FAILURE_KINDS = assets.FAILURE_KINDS

FILAMENT_COLOURS = [  # sRGB 0..1: the common spool colours
    (0.9, 0.9, 0.9), (0.05, 0.05, 0.05), (0.8, 0.1, 0.1), (0.1, 0.6, 0.15),
    (0.1, 0.25, 0.8), (1.0, 0.55, 0.05), (0.95, 0.85, 0.1), (0.55, 0.55, 0.58),
    (0.5, 0.1, 0.6), (0.9, 0.4, 0.6), (0.0, 0.6, 0.6), (0.45, 0.3, 0.15),
    (0.85, 0.75, 0.55), (0.2, 0.35, 0.25),
]


def srgb_to_linear(c):
    return tuple(x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c)


def jitter_colour(rng, rgb, amount=0.08):
    return tuple(min(1.0, max(0.0, x + rng.uniform(-amount, amount))) for x in rgb)


# --------------------------------------------------------------------------
# Blender helpers

def reset_scene(res_x, res_y, samples):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = True
    scene.cycles.adaptive_threshold = 0.05
    scene.cycles.use_denoising = False  # Debian's build has no OpenImageDenoise
    scene.cycles.max_bounces = 4
    scene.cycles.diffuse_bounces = 2
    scene.cycles.glossy_bounces = 2
    scene.cycles.transmission_bounces = 4
    scene.cycles.transparent_max_bounces = 4
    scene.cycles.caustics_reflective = False
    scene.cycles.caustics_refractive = False
    scene.render.resolution_x = res_x
    scene.render.resolution_y = res_y
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.threads_mode = "AUTO"
    scene.view_layers[0].use_pass_object_index = True
    world = bpy.data.worlds.new("world")
    scene.world = world
    return scene


def new_material(name, colour, roughness=0.5, metallic=0.0, transmission=0.0,
                 layer_height=None, noise_bump=0.0, sheen=0.0, emission=None):
    """A Principled material; layer_height (cm) adds printed layer lines."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    links = mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*srgb_to_linear(colour), 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Transmission"].default_value = transmission
    bsdf.inputs["Sheen"].default_value = sheen
    if emission is not None:
        bsdf.inputs["Emission"].default_value = (*emission, 1.0)
        bsdf.inputs["Emission Strength"].default_value = 1.0
    bump_height = None
    if layer_height:
        coords = nodes.new("ShaderNodeTexCoord")
        wave = nodes.new("ShaderNodeTexWave")
        wave.wave_type = "BANDS"
        wave.bands_direction = "Z"
        wave.inputs["Scale"].default_value = 1.0 / layer_height / 6.0
        wave.inputs["Distortion"].default_value = 0.3
        links.new(coords.outputs["Object"], wave.inputs["Vector"])
        bump_height = wave.outputs["Fac"]
        strength = 0.25
    elif noise_bump:
        noise = nodes.new("ShaderNodeTexNoise")
        noise.inputs["Scale"].default_value = 60.0
        bump_height = noise.outputs["Fac"]
        strength = noise_bump
    if bump_height is not None:
        bump = nodes.new("ShaderNodeBump")
        bump.inputs["Strength"].default_value = strength
        bump.inputs["Distance"].default_value = 0.02
        links.new(bump_height, bump.inputs["Height"])
        links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
    return mat


def image_material(name, path, roughness=0.4):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(path, check_existing=True)
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = roughness
    mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def link(obj):
    bpy.context.scene.collection.objects.link(obj)
    return obj


def mesh_object(name, bm, material):
    me = bpy.data.meshes.new(name)
    bm.to_mesh(me)
    bm.free()
    obj = link(bpy.data.objects.new(name, me))
    if material is not None:
        me.materials.append(material)
    return obj


def box(name, size, location, material, rotation=(0, 0, 0)):
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    bmesh.ops.scale(bm, vec=Vector(size), verts=bm.verts)
    obj = mesh_object(name, bm, material)
    obj.location = location
    obj.rotation_euler = rotation
    return obj


def cylinder(name, radius, depth, location, material, segments=32, radius2=None, rotation=(0, 0, 0)):
    bm = bmesh.new()
    bmesh.ops.create_cone(bm, cap_ends=True, cap_tris=False, segments=segments,
                          radius1=radius, radius2=radius if radius2 is None else radius2, depth=depth)
    obj = mesh_object(name, bm, material)
    obj.location = location
    obj.rotation_euler = rotation
    for poly in obj.data.polygons:
        poly.use_smooth = True
    return obj


def tube(name, points, radius, material, resolution=2):
    """A poly curve with a round bevel: filament, cables, tubes."""
    curve = bpy.data.curves.new(name, "CURVE")
    curve.dimensions = "3D"
    curve.bevel_depth = radius
    curve.bevel_resolution = resolution
    curve.use_fill_caps = True
    spline = curve.splines.new("POLY")
    spline.points.add(len(points) - 1)
    for point, p in zip(spline.points, points):
        point.co = (p[0], p[1], p[2], 1.0)
    obj = link(bpy.data.objects.new(name, curve))
    curve.materials.append(material)
    return obj


_STL_CACHE = {}


def read_stl(path):
    """Triangles of a binary or ASCII STL file (cached per process)."""
    if path in _STL_CACHE:
        return _STL_CACHE[path]
    with open(path, "rb") as f:
        data = f.read()
    tris = []
    count = struct.unpack_from("<I", data, 80)[0] if len(data) >= 84 else 0
    if len(data) == 84 + 50 * count and count > 0:
        for i in range(count):
            v = struct.unpack_from("<9f", data, 84 + 50 * i + 12)
            tris.append((v[0:3], v[3:6], v[6:9]))
    else:
        verts = []
        for line in data.decode("ascii", "replace").splitlines():
            parts = line.split()
            if parts and parts[0] == "vertex":
                verts.append(tuple(float(x) for x in parts[1:4]))
        tris = [tuple(verts[i:i + 3]) for i in range(0, len(verts) - 2, 3)]
    _STL_CACHE[path] = tris
    return tris


def stl_bmesh(path, target_size, cut_fraction=1.0):
    """The STL scaled so its largest extent is target_size, standing on z=0,
    centred on the origin; cut_fraction < 1 keeps only the printed part."""
    tris = read_stl(path)
    bm = bmesh.new()
    index = {}
    for tri in tris:
        vs = []
        for v in tri:
            key = (round(v[0], 4), round(v[1], 4), round(v[2], 4))
            if key not in index:
                index[key] = bm.verts.new(key)
            vs.append(index[key])
        if len(set(vs)) == 3:
            try:
                bm.faces.new(vs)
            except ValueError:
                pass  # a duplicate face in the file
    xs = [v.co.x for v in bm.verts]
    ys = [v.co.y for v in bm.verts]
    zs = [v.co.z for v in bm.verts]
    extent = max(max(xs) - min(xs), max(ys) - min(ys), max(zs) - min(zs)) or 1.0
    scale = target_size / extent
    centre = Vector(((max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2, min(zs)))
    for v in bm.verts:
        v.co = (v.co - centre) * scale
    if cut_fraction < 0.999:
        height = (max(zs) - min(zs)) * scale
        cut = max(0.05, height * cut_fraction)
        geom = bm.verts[:] + bm.edges[:] + bm.faces[:]
        bmesh.ops.bisect_plane(bm, geom=geom, plane_co=(0, 0, cut), plane_no=(0, 0, 1), clear_outer=True)
        edges = [e for e in bm.edges if e.is_boundary]
        if edges:
            bmesh.ops.holes_fill(bm, edges=edges, sides=0)
    return bm


# --------------------------------------------------------------------------
# The printer

def build_bed(rng, info):
    kind = rng.choices(["pei_textured", "pei_smooth", "glass", "texture_png", "buildtak", "stl_plate"],
                       [3, 2, 2, 2, 1, 2])[0]
    bx = rng.uniform(12, 35)
    by = bx * rng.uniform(0.85, 1.15)
    info["bed"] = {"kind": kind, "size": [round(bx, 2), round(by, 2)]}
    plate_mat = new_material("bed_plate", jitter_colour(rng, (0.6, 0.6, 0.62)), 0.4, 0.8)
    box("bed_plate", (bx + 2, by + 2, 0.6), (0, 0, -0.45), plate_mat)
    if kind == "pei_textured":
        colour = rng.choice([(0.75, 0.55, 0.2), (0.15, 0.15, 0.15), (0.6, 0.45, 0.25), (0.3, 0.3, 0.32)])
        mat = new_material("bed", jitter_colour(rng, colour, 0.05), rng.uniform(0.5, 0.8), 0.3, noise_bump=0.6)
    elif kind == "pei_smooth":
        colour = rng.choice([(0.85, 0.65, 0.3), (0.8, 0.6, 0.35), (0.2, 0.2, 0.22)])
        mat = new_material("bed", jitter_colour(rng, colour, 0.05), rng.uniform(0.15, 0.35), 0.2)
    elif kind == "glass":
        mat = new_material("bed", (0.85, 0.9, 0.9), 0.02, 0.0, transmission=0.9)
        clip_mat = new_material("clip", (0.7, 0.7, 0.72), 0.3, 1.0)
        for sx in (-1, 1):
            for sy in (-1, 1):
                if rng.random() < 0.8:
                    box("bed_clip", (1.2, 1.8, 0.5), (sx * (bx / 2 - 0.3), sy * (by / 2 - 0.8), 0.2), clip_mat)
    elif kind == "texture_png":
        path = rng.choice(assets.bed_textures())
        info["bed"]["texture"] = path
        mat = image_material("bed", path, rng.uniform(0.3, 0.7))
    elif kind == "buildtak":
        mat = new_material("bed", jitter_colour(rng, (0.08, 0.08, 0.08), 0.03), 0.85, noise_bump=0.3)
    else:
        path = rng.choice(assets.bed_models())
        info["bed"]["model"] = path
        colour = rng.choice([(0.1, 0.1, 0.1), (0.5, 0.5, 0.52), (0.2, 0.2, 0.25), (0.75, 0.55, 0.2)])
        mat = new_material("bed", jitter_colour(rng, colour, 0.05), rng.uniform(0.3, 0.7), 0.4)
        bm = stl_bmesh(path, max(bx, by))
        obj = mesh_object("bed_model", bm, mat)
        zs = [v.co.z for v in obj.data.vertices]
        obj.location = (0, 0, -(max(zs) if zs else 0))
        mat = new_material("bed_top", jitter_colour(rng, colour, 0.05), 0.5, 0.3, noise_bump=0.3)
    bed = box("bed", (bx, by, 0.15), (0, 0, -0.075), mat)
    bed.rotation_euler = (0, 0, 0)
    if rng.random() < 0.3:  # a printed logo or a grid on the sheet
        logo_mat = new_material("logo", rng.choice([(0.9, 0.9, 0.9), (0.1, 0.1, 0.1), (0.8, 0.3, 0.1)]), 0.5)
        box("bed_logo", (bx * rng.uniform(0.1, 0.25), by * 0.05, 0.01),
            (rng.uniform(-bx / 3, bx / 3), -by / 2 + by * 0.06, 0.005), logo_mat)
    return bx, by


def build_frame(rng, info, bx, by):
    """Frame style; returns the height of the top bar and where the gantry
    runs, for the camera and the print head."""
    style = rng.choices(["i3", "enclosed", "open_cube"], [4, 3, 2])[0]
    colour = rng.choice([(0.05, 0.05, 0.05), (0.7, 0.7, 0.72), (0.1, 0.1, 0.12), (0.9, 0.9, 0.9), (0.6, 0.1, 0.1)])
    mat = new_material("frame", jitter_colour(rng, colour, 0.04), rng.uniform(0.3, 0.6), 0.6)
    height = rng.uniform(28, 48)
    e = 2.0  # 2020 extrusion
    info["frame"] = {"style": style, "height": round(height, 1)}
    if style == "i3":
        for sx in (-1, 1):
            box("upright", (e, e * 2, height), (sx * (bx / 2 + 5), 0, height / 2 - 4), mat)
        box("top_bar", (bx + 10 + e, e, e), (0, 0, height - 4), mat)
        box("base_l", (e, by + 14, e * 2), (-(bx / 2 + 5), 0, -4), mat)
        box("base_r", (e, by + 14, e * 2), ((bx / 2 + 5), 0, -4), mat)
    else:
        w = bx / 2 + 5
        d = by / 2 + 5
        for sx in (-1, 1):
            for sy in (-1, 1):
                box("post", (e, e, height), (sx * w, sy * d, height / 2 - 6), mat)
        for sy in (-1, 1):
            box("beam_x", (2 * w, e, e), (0, sy * d, height - 6), mat)
            box("beam_x_low", (2 * w, e, e), (0, sy * d, -6), mat)
        for sx in (-1, 1):
            box("beam_y", (e, 2 * d, e), (sx * w, 0, height - 6), mat)
        if style == "enclosed":
            panel_colour = rng.choice([(0.1, 0.1, 0.1), (0.8, 0.8, 0.8), (0.3, 0.3, 0.35), (0.15, 0.12, 0.1)])
            panel = new_material("panel", panel_colour, rng.uniform(0.2, 0.7),
                                 transmission=rng.choice([0.0, 0.0, 0.6]))
            box("wall_back", (2 * w, 0.3, height), (0, d + 0.2, height / 2 - 6), panel)
            box("wall_l", (0.3, 2 * d, height), (-w - 0.2, 0, height / 2 - 6), panel)
            box("wall_r", (0.3, 2 * d, height), (w + 0.2, 0, height / 2 - 6), panel)
            box("roof", (2 * w, 2 * d, 0.3), (0, 0, height - 5), panel)
    return style, height


def build_head(rng, info, nozzle):
    """Hotend, heat sink, fan shroud and nozzle; returns the objects."""
    style = rng.choice(["prusa", "ender", "voron", "bare"])
    info["head"] = style
    shroud_colour = {
        "prusa": (1.0, 0.4, 0.05), "ender": (0.05, 0.05, 0.05), "voron": rng.choice(FILAMENT_COLOURS),
        "bare": (0.6, 0.6, 0.62),
    }[style]
    brass = new_material("brass", (0.8, 0.6, 0.25), 0.25, 1.0)
    alu = new_material("heatblock", (0.75, 0.75, 0.78), 0.35, 1.0)
    shroud = new_material("shroud", jitter_colour(rng, shroud_colour, 0.05), 0.5, 0.0)
    x, y, z = nozzle
    objs = [
        cylinder("nozzle", 0.45, 0.5, (x, y, z + 0.25), brass, radius2=0.05 + 0.0, segments=6,
                 rotation=(math.pi, 0, 0)),
        box("heatblock", (1.6, 2.0, 1.1), (x, y, z + 1.05), alu),
        cylinder("heatsink", 1.1, 2.6, (x, y, z + 2.9), alu, segments=24),
    ]
    if style != "bare":
        sx, sy, sz = rng.uniform(4, 6), rng.uniform(3.5, 5.5), rng.uniform(4.5, 7)
        objs.append(box("shroud", (sx, sy, sz), (x, y - 0.3, z + 1.6 + sz / 2), shroud))
        objs.append(box("duct", (sx * 0.8, 1.0, 0.8), (x, y - sy / 2 + 0.2, z + 0.9), shroud))
    return objs


def build_gantry(rng, info, style, bx, by, frame_h, nozzle):
    mat = new_material("gantry", (0.1, 0.1, 0.1), 0.4, 0.6)
    x, y, z = nozzle
    carriage_z = z + 6
    if style == "i3":
        box("x_beam", (bx + 10, 2, 4), (0, y + 3, carriage_z), mat)
    else:
        box("x_beam", (bx + 10, 2, 2), (0, y + 3, frame_h - 9), mat)
        box("rail_l", (2, by + 10, 2), (-(bx / 2 + 4), 0, frame_h - 9), mat)
        box("rail_r", (2, by + 10, 2), ((bx / 2 + 4), 0, frame_h - 9), mat)
    rod = new_material("rod", (0.8, 0.8, 0.82), 0.15, 1.0)
    if style == "i3":
        for sx in (-1, 1):
            cylinder("z_rod", 0.4, frame_h, (sx * (bx / 2 + 3.5), 0, frame_h / 2 - 4), rod, segments=12)


# --------------------------------------------------------------------------
# Prints

def filament(rng, info):
    colour = jitter_colour(rng, rng.choice(FILAMENT_COLOURS), 0.06)
    finish = rng.choices(["matte", "glossy", "silk", "translucent"], [4, 3, 2, 1])[0]
    info["filament"] = {"colour": [round(c, 3) for c in colour], "finish": finish}
    rough = {"matte": 0.7, "glossy": 0.3, "silk": 0.2, "translucent": 0.15}[finish]
    metallic = 0.55 if finish == "silk" else 0.0
    transmission = 0.7 if finish == "translucent" else 0.0
    layer = rng.choice([0.1, 0.15, 0.2, 0.28])
    part = new_material("part", colour, rough + rng.uniform(-0.1, 0.1), metallic, transmission, layer_height=layer)
    strand = new_material("strand", colour, rough, metallic, transmission * 0.5)
    return part, strand, colour


def part_shape(rng, name, footprint, height, progress, mat):
    """One part of a print at `progress` (0..1) of its height; returns the
    object and its current top height."""
    kind = rng.choices(["block", "cylinder", "vase", "tower", "cone", "stl", "overhang"],
                       [3, 3, 2, 1, 1, 4, 1])[0]
    h = max(0.05, height * progress)
    if kind == "block":
        obj = box(name, (footprint, footprint * rng.uniform(0.4, 1.2), h), (0, 0, h / 2), mat)
    elif kind == "cylinder":
        obj = cylinder(name, footprint / 2, h, (0, 0, h / 2), mat, segments=48)
    elif kind == "vase":
        r = footprint / 2
        obj = cylinder(name, r, h, (0, 0, h / 2), mat, segments=64,
                       radius2=r * (1 + 0.3 * progress * rng.uniform(-1, 1)))
        mod = obj.modifiers.new("wall", "SOLIDIFY")
        mod.thickness = 0.08
        bm = bmesh.new()
        bm.from_mesh(obj.data)
        top = [f for f in bm.faces if f.normal.z > 0.9]
        bmesh.ops.delete(bm, geom=top, context="FACES")
        bm.to_mesh(obj.data)
        bm.free()
    elif kind == "tower":
        w = rng.uniform(0.5, 1.5)
        obj = box(name, (w, w, h * 1.3), (0, 0, h * 0.65), mat)
        h *= 1.3
    elif kind == "cone":
        obj = cylinder(name, footprint / 2, h, (0, 0, h / 2), mat, segments=48,
                       radius2=footprint / 2 * (1 - 0.8 * progress))
    elif kind == "overhang":
        # A T: a column and, once printed that far, a slab held by supports.
        col_h = h if progress < 0.6 else height * 0.6
        obj = box(name, (footprint * 0.3, footprint * 0.3, col_h), (0, 0, col_h / 2), mat)
        if progress >= 0.6:
            slab_h = h - col_h
            slab = box(name + "_slab", (footprint, footprint * 0.6, slab_h), (0, 0, col_h + slab_h / 2), mat)
            slab.parent = obj
            for i in range(6):
                sx = rng.uniform(-footprint / 2, footprint / 2)
                if abs(sx) > footprint * 0.18:
                    sup = box(name + "_support", (0.15, footprint * 0.5, col_h), (sx, 0, col_h / 2), mat)
                    sup.parent = obj
    else:
        path = rng.choice(assets.shape_models())
        bm = stl_bmesh(path, footprint * rng.uniform(1.0, 1.6), progress)
        obj = mesh_object(name, bm, mat)
        zs = [v.co.z for v in obj.data.vertices]
        h = max(zs) if zs else 0.05
        for poly in obj.data.polygons:
            poly.use_smooth = True
    return obj, kind, h


def build_print(rng, key, info, bx, by, part_mat, progress):
    """1-4 parts on the bed, brim/skirt/purge line; returns parts as
    (object, x, y, radius, top height)."""
    n = rng.choices([1, 2, 3, 4], [5, 3, 2, 1])[0]
    parts = []
    span = min(bx, by) * 0.35
    for i in range(n):
        footprint = rng.uniform(1.5, min(bx, by) * (0.45 if n == 1 else 0.25))
        height = rng.uniform(1.0, 14.0)
        # Each part draws its shape from its own stream: a sequence's frames
        # differ in progress, and that must not move anything else.
        shape_rng = random.Random("%s/part%d" % (key, i))
        obj, kind, top = part_shape(shape_rng, "part%d" % i, footprint, height, progress, part_mat)
        for _ in range(10):
            x, y = rng.uniform(-span, span), rng.uniform(-span, span)
            if all(math.hypot(x - px, y - py) > footprint / 2 + pr + 0.5 for _, px, py, pr, _ in parts):
                break
        obj.location.x += x
        obj.location.y += y
        obj.rotation_euler.z = rng.uniform(0, math.pi)
        parts.append((obj, x, y, footprint / 2, top))
        info.setdefault("parts", []).append({"kind": kind, "footprint": round(footprint, 2),
                                             "height": round(height, 2), "top": round(top, 2)})
        if rng.random() < 0.3:  # brim
            cylinder("brim", footprint / 2 + 0.6, 0.04, (x, y, 0.02), part_mat, segments=32)
    if rng.random() < 0.5:  # skirt around everything
        r = span + rng.uniform(2, 4)
        pts = [(r * math.cos(t / 40 * 2 * math.pi), r * math.sin(t / 40 * 2 * math.pi), 0.02) for t in range(41)]
        tube("skirt", pts, 0.025, part_mat)
    if rng.random() < 0.6:  # purge line along the front edge
        y = -by / 2 + rng.uniform(0.5, 1.5)
        x0 = -bx / 2 + 1
        tube("purge", [(x0, y, 0.03), (x0 + bx * rng.uniform(0.3, 0.6), y, 0.03)], 0.04, part_mat)
    return parts


def surface_height(parts, x, y):
    top = 0.0
    for _, px, py, pr, ph in parts:
        if math.hypot(x - px, y - py) <= pr:
            top = max(top, ph)
    return top


# --------------------------------------------------------------------------
# Failures: each returns the objects that make it (they get an object index,
# so the box is what the camera actually sees of them).

def coil_path(rng, start, parts, n, radius, bounds, loop=0.6, gravity=0.35, step=0.12):
    """Extruded filament with nothing under it: it coils (the nozzle keeps
    pushing), falls, and piles up on whatever is below."""
    p = Vector(start)
    d = Vector((rng.uniform(-1, 1), rng.uniform(-1, 1), -0.5)).normalized()
    axis = Vector((rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1, 1))).normalized()
    centre = Vector((start[0], start[1], 0))
    pts = [tuple(p)]
    bx, by = bounds
    for i in range(n):
        axis = (axis + Vector((rng.gauss(0, 0.3), rng.gauss(0, 0.3), rng.gauss(0, 0.3)))).normalized()
        d = Matrix.Rotation(loop * rng.uniform(0.5, 1.5), 3, axis) @ d
        d.z -= gravity * rng.uniform(0.5, 1.0)
        d.normalize()
        p = p + d * step
        floor = surface_height(parts, p.x, p.y) + radius
        if p.z < floor:
            p.z = floor + rng.uniform(0, 0.05)
            d.z = abs(d.z) * 0.3
        off = Vector((p.x - centre.x, p.y - centre.y, 0))
        limit = 1.5 + 0.004 * i
        if off.length > limit:
            d -= off.normalized() * 0.6
        p.x = max(-bx / 2, min(bx / 2, p.x))
        p.y = max(-by / 2, min(by / 2, p.y))
        pts.append(tuple(p))
    return pts


def fail_spaghetti(rng, parts, nozzle, strand_mat, bounds, amount):
    strands = rng.randint(4, 12)
    radius = rng.uniform(0.025, 0.045)
    objs = []
    for s in range(strands):
        n = int(rng.randint(80, 400) * amount) + 10
        start = (nozzle[0] + rng.gauss(0, 0.2), nozzle[1] + rng.gauss(0, 0.2), nozzle[2])
        pts = coil_path(rng, start, parts, n, radius, bounds, loop=rng.uniform(0.3, 0.9))
        objs.append(tube("spaghetti%d" % s, pts, radius, strand_mat))
    return objs


def fail_nest(rng, parts, nozzle, strand_mat, bounds, amount):
    """A bird's nest on the nozzle: coils stuck around the hotend."""
    radius = rng.uniform(0.02, 0.035)
    objs = []
    for s in range(rng.randint(3, 7)):
        pts = []
        c = Vector(nozzle) + Vector((0, 0, rng.uniform(-1.0, 0.5)))
        r = rng.uniform(0.8, 2.2) * (0.5 + amount / 2)
        a = rng.uniform(0, 6.28)
        for i in range(int(150 * amount) + 20):
            a += rng.uniform(0.2, 0.5)
            rr = r * rng.uniform(0.7, 1.1)
            pts.append((c.x + rr * math.cos(a), c.y + rr * math.sin(a),
                        c.z + rng.uniform(-1.2, 0.8) * r * 0.6))
        objs.append(tube("nest%d" % s, pts, radius, strand_mat))
    return objs


def fail_blob(rng, parts, nozzle, strand_mat, bounds, amount):
    bm = bmesh.new()
    bmesh.ops.create_icosphere(bm, subdivisions=3, radius=rng.uniform(1.0, 2.5) * (0.4 + 0.6 * amount))
    for v in bm.verts:
        v.co *= rng.uniform(0.75, 1.25)
    obj = mesh_object("blob", bm, strand_mat)
    obj.location = (nozzle[0], nozzle[1], nozzle[2] + 0.6)
    obj.scale = (1.0, rng.uniform(0.8, 1.3), rng.uniform(0.6, 1.0))
    for poly in obj.data.polygons:
        poly.use_smooth = True
    return [obj]


def fail_detached(rng, parts, nozzle, strand_mat, bounds, amount):
    """The part came off the bed: knocked over and pushed aside, with
    filament dribbling from the nozzle where it was."""
    obj, px, py, pr, ph = rng.choice(parts)
    obj.rotation_euler = (rng.choice([math.pi / 2, -math.pi / 2, rng.uniform(0.4, 1.2)]), rng.uniform(-0.3, 0.3),
                          rng.uniform(0, 6.28))
    obj.location.x += rng.uniform(-4, 4)
    obj.location.y += rng.uniform(-4, 4)
    obj.location.z = pr * 0.8
    others = [p for p in parts if p[0] is not obj]
    return [obj] + fail_spaghetti(rng, others, nozzle, strand_mat, bounds, amount * 0.5)


def fail_stringing(rng, parts, nozzle, strand_mat, bounds, amount):
    """Hairs between the parts (or across one part's top)."""
    objs = []
    radius = rng.uniform(0.006, 0.015)
    for i in range(int(rng.randint(15, 60) * (0.3 + amount))):
        a = rng.choice(parts)
        b = rng.choice(parts)
        za = rng.uniform(0.3, 1.0) * a[4]
        zb = rng.uniform(0.3, 1.0) * b[4]
        pa = Vector((a[1] + rng.uniform(-a[3], a[3]), a[2] + rng.uniform(-a[3], a[3]), za))
        pb = Vector((b[1] + rng.uniform(-b[3], b[3]), b[2] + rng.uniform(-b[3], b[3]), zb))
        if (pa - pb).length < 0.5:
            pb = pa + Vector((rng.uniform(-2, 2), rng.uniform(-2, 2), 0))
        sag = rng.uniform(0.1, 0.8)
        pts = [tuple(pa.lerp(pb, t) - Vector((0, 0, sag * math.sin(math.pi * t)))) for t in [k / 8 for k in range(9)]]
        objs.append(tube("string%d" % i, pts, radius, strand_mat, resolution=1))
    return objs


def fail_air(rng, parts, nozzle, strand_mat, bounds, amount):
    """Printing in the air over a base that stopped growing: loose loops
    hanging under the nozzle."""
    objs = []
    radius = rng.uniform(0.02, 0.03)
    for s in range(rng.randint(3, 8)):
        pts = []
        x, y = nozzle[0] + rng.uniform(-2, 2), nozzle[1] + rng.uniform(-2, 2)
        z = nozzle[2]
        for i in range(int(60 * amount) + 10):
            x += rng.uniform(-0.4, 0.4)
            y += rng.uniform(-0.4, 0.4)
            z = max(surface_height(parts, x, y) + radius, z - rng.uniform(0.0, 0.35))
            pts.append((x, y, z))
        objs.append(tube("air%d" % s, pts, radius, strand_mat))
    return objs


FAILURES = {
    "spaghetti": fail_spaghetti, "nest": fail_nest, "blob": fail_blob, "detached": fail_detached,
    "stringing": fail_stringing, "air": fail_air,
}
assert set(FAILURES) == set(FAILURE_KINDS)


# --------------------------------------------------------------------------
# Clutter, room, lights

def build_clutter(rng, info, bx, by, frame_h, nozzle, filament_colour):
    items = []
    strand = new_material("feed", filament_colour, 0.4)
    if rng.random() < 0.7:  # the spool and the filament running to the extruder
        sx = rng.choice([-1, 1]) * (bx / 2 + rng.uniform(6, 12))
        sz = frame_h * rng.uniform(0.5, 1.0)
        spool_mat = new_material("spool", rng.choice([(0.1, 0.1, 0.1), (0.9, 0.9, 0.9), (0.8, 0.6, 0.3)]), 0.5)
        cylinder("spool", 10, 6.5, (sx, 0, sz), spool_mat, rotation=(0, math.pi / 2, 0))
        cylinder("spool_fil", 8.5, 6.0, (sx, 0, sz), new_material("spool_fil", filament_colour, 0.4),
                 rotation=(0, math.pi / 2, 0))
        end = Vector((nozzle[0], nozzle[1], nozzle[2] + 8))
        start = Vector((sx, rng.uniform(-3, 3), sz - 8))
        mid = (start + end) / 2 + Vector((0, rng.uniform(-5, 5), rng.uniform(3, 12)))
        pts = [tuple((1 - t) ** 2 * start + 2 * (1 - t) * t * mid + t ** 2 * end) for t in [k / 24 for k in range(25)]]
        items.append("spool")
        if rng.random() < 0.5:  # a bowden tube instead of a bare strand
            tube("bowden", pts, 0.2, new_material("ptfe", (0.95, 0.95, 0.95), 0.3, transmission=0.5))
        else:
            tube("feed", pts, 0.0875, strand)
    cable_mat = new_material("cable", rng.choice([(0.05, 0.05, 0.05), (0.8, 0.1, 0.1), (0.9, 0.9, 0.9)]), 0.5)
    for c in range(rng.randint(0, 3)):  # cables draped off the head and the frame
        start = Vector((nozzle[0] + rng.uniform(-2, 2), nozzle[1] + 2, nozzle[2] + 6))
        end = Vector((rng.choice([-1, 1]) * (bx / 2 + 5), rng.uniform(-by / 2, by / 2), rng.uniform(0, frame_h)))
        sag = rng.uniform(2, 10)
        pts = [tuple(start.lerp(end, t) - Vector((0, 0, sag * math.sin(math.pi * t)))) for t in [k / 20 for k in range(21)]]
        tube("cable%d" % c, pts, rng.uniform(0.15, 0.35), cable_mat)
        items.append("cable")
    if rng.random() < 0.35:  # a tool or a box on the bench
        tool = new_material("tool", jitter_colour(rng, rng.choice(FILAMENT_COLOURS), 0.1), 0.5)
        box("tool", (rng.uniform(2, 8), rng.uniform(1, 4), rng.uniform(0.5, 3)),
            (rng.choice([-1, 1]) * (bx / 2 + rng.uniform(2, 8)), rng.uniform(-by / 2 - 8, -by / 2), -4), tool,
            rotation=(0, 0, rng.uniform(0, 3)))
        items.append("tool")
    if rng.random() < 0.08:  # a hand reaching in
        skin = new_material("skin", jitter_colour(rng, rng.choice([(0.9, 0.7, 0.55), (0.6, 0.4, 0.3), (0.4, 0.25, 0.18)]), 0.05), 0.5,
                            sheen=0.3)
        hx, hy = rng.uniform(-bx / 3, bx / 3), -by / 2 - 2
        cylinder("arm", 2.8, 20, (hx, hy - 10, 4), skin, rotation=(math.pi / 2 - 0.2, 0, 0))
        box("hand", (7, 9, 2.5), (hx, hy + 1, 3), skin)
        items.append("hand")
    info["clutter"] = items


def build_room(rng, info, bx, by, frame_h):
    table = new_material("table", jitter_colour(rng, rng.choice([(0.5, 0.35, 0.2), (0.85, 0.85, 0.85), (0.2, 0.2, 0.2),
                                                                 (0.6, 0.5, 0.4)]), 0.08), 0.6, noise_bump=0.2)
    box("table", (200, 200, 2), (0, 0, -8), table)
    wall = new_material("wall", jitter_colour(rng, rng.choice([(0.9, 0.9, 0.88), (0.6, 0.65, 0.7), (0.8, 0.75, 0.6),
                                                               (0.3, 0.3, 0.3)]), 0.08), 0.9)
    box("wall", (300, 2, 200), (0, rng.uniform(40, 90), 60), wall)
    if rng.random() < 0.5:
        box("wall_side", (2, 300, 200), (rng.choice([-1, 1]) * rng.uniform(50, 100), 0, 60), wall)


def build_lights(rng, info, bx, by, frame_h, camera_loc):
    kind = rng.choices(["led_strip", "room", "daylight", "dark_ir", "lamp"], [3, 3, 2, 1, 2])[0]
    info["light"] = kind
    world = bpy.context.scene.world
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    sky = jitter_colour(rng, (0.5, 0.5, 0.5), 0.15)
    strength = rng.uniform(0.05, 0.6)

    def area(name, loc, size, energy, colour, size_y=None):
        data = bpy.data.lights.new(name, "AREA")
        data.energy = energy
        data.color = colour
        if size_y:
            data.shape = "RECTANGLE"
            data.size, data.size_y = size, size_y
        else:
            data.size = size
        obj = link(bpy.data.objects.new(name, data))
        obj.location = loc
        direction = Vector((0, 0, 0)) - Vector(loc)
        obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
        return obj

    warm = jitter_colour(rng, (1.0, 0.9, 0.8), 0.1)
    if kind == "led_strip":
        area("led", (0, -by / 2, frame_h - 6), bx + 8, rng.uniform(1.5e4, 6e4),
             jitter_colour(rng, (1.0, 1.0, 0.97), 0.05), size_y=0.6)
    elif kind == "room":
        area("ceiling", (rng.uniform(-60, 60), rng.uniform(-60, 20), 150), 80, rng.uniform(2e5, 8e5), warm)
    elif kind == "daylight":
        data = bpy.data.lights.new("sun", "SUN")
        data.energy = rng.uniform(1.5, 6)
        data.angle = math.radians(rng.uniform(1, 15))
        sun = link(bpy.data.objects.new("sun", data))
        sun.rotation_euler = Euler((rng.uniform(0.2, 1.2), 0, rng.uniform(0, 6.28)))
        sky = jitter_colour(rng, (0.6, 0.7, 0.9), 0.1)
        strength = rng.uniform(0.3, 1.2)
    elif kind == "dark_ir":
        area("ir", tuple(Vector(camera_loc) + Vector((0, 0, 2))), 3, rng.uniform(1e4, 4e4), (1, 1, 1))
        strength = 0.0
    else:
        data = bpy.data.lights.new("lamp", "POINT")
        data.energy = rng.uniform(1.5e5, 6e5)
        data.color = warm
        data.shadow_soft_size = rng.uniform(1, 10)
        lamp = link(bpy.data.objects.new("lamp", data))
        lamp.location = (rng.uniform(-60, 60), rng.uniform(-60, 0), rng.uniform(40, 90))
    bg.inputs["Color"].default_value = (*srgb_to_linear(sky), 1.0)
    bg.inputs["Strength"].default_value = strength


# --------------------------------------------------------------------------
# Cameras as users mount them

def place_camera(rng, family, bx, by, frame_h, nozzle, style):
    """Location, target and field of view (degrees) for a camera family."""
    if family == "frame_front":  # on the top bar or a front post, looking down
        loc = (rng.uniform(-bx / 3, bx / 3), -by / 2 - rng.uniform(5, 14), frame_h * rng.uniform(0.5, 0.9))
        target = (rng.uniform(-3, 3), rng.uniform(-3, 4), rng.uniform(0, 4))
        fov = rng.uniform(55, 80)
    elif family == "bed_mounted":  # on the bed's front edge: low, moves with the bed
        loc = (rng.uniform(-bx / 4, bx / 4), -by / 2 - rng.uniform(2, 8), rng.uniform(2, 10))
        target = (rng.uniform(-2, 2), rng.uniform(0, by / 4), rng.uniform(1, 6))
        fov = rng.uniform(60, 90)
    elif family == "enclosure_corner":  # a top corner inside an enclosure, wide
        sx = rng.choice([-1, 1])
        loc = (sx * (bx / 2 + rng.uniform(2, 4)), -by / 2 - rng.uniform(2, 4), frame_h - rng.uniform(8, 14))
        target = (rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(0, 3))
        fov = rng.uniform(70, 100)
    elif family == "top_down":
        loc = (rng.uniform(-3, 3), rng.uniform(-6, 0), frame_h * rng.uniform(0.8, 1.4))
        target = (loc[0] * 0.5, loc[1] * 0.3 + 2, 0)
        fov = rng.uniform(55, 85)
    elif family == "nozzle_cam":  # on the print head, close and looking down
        loc = (nozzle[0] + rng.uniform(-3, 3), nozzle[1] - rng.uniform(3, 6), nozzle[2] + rng.uniform(3, 7))
        target = (nozzle[0], nozzle[1] + rng.uniform(-1, 1), max(0, nozzle[2] - 3))
        fov = rng.uniform(60, 95)
    else:  # "desk_side": outside the printer, on the desk or a tripod
        a = rng.uniform(-2.4, -0.7)
        dist = max(bx, by) * rng.uniform(1.2, 2.4)
        loc = (dist * math.cos(a), dist * math.sin(a), rng.uniform(0, frame_h * 0.8))
        target = (rng.uniform(-2, 2), rng.uniform(-2, 2), rng.uniform(1, 6))
        fov = rng.uniform(45, 75)
    return loc, target, fov


def build_camera(rng, info, family, loc, target, fov):
    cam_data = bpy.data.cameras.new("camera")
    fisheye = rng.random() < (0.4 if family in ("enclosure_corner", "nozzle_cam") else 0.08)
    if fisheye:
        cam_data.type = "PANO"
        # Blender 3.x keeps these on the camera's cycles settings or on the camera.
        for holder in (cam_data, getattr(cam_data, "cycles", None)):
            if holder is not None and hasattr(holder, "panorama_type"):
                holder.panorama_type = "FISHEYE_EQUISOLID"
                holder.fisheye_lens = rng.uniform(3.5, 6.0)
                holder.fisheye_fov = math.radians(rng.uniform(140, 180))
        cam_data.sensor_width = 12.0
    else:
        cam_data.angle = math.radians(fov)
    cam_data.clip_start = 0.5
    cam_data.clip_end = 1000
    cam = link(bpy.data.objects.new("camera", cam_data))
    cam.location = loc
    direction = Vector(target) - Vector(loc)
    rot = direction.to_track_quat("-Z", "Y").to_euler()
    rot.rotate_axis("Z", math.radians(rng.gauss(0, 4)))  # a little tilt, as mounted by hand
    cam.rotation_euler = rot
    if rng.random() < 0.15:  # mounted upside down and not flipped in OctoPrint
        cam.rotation_euler.rotate_axis("Z", math.pi)
    bpy.context.scene.camera = cam
    info["camera"] = {"family": family, "fov": round(fov, 1), "fisheye": fisheye,
                      "location": [round(x, 2) for x in loc], "target": [round(x, 2) for x in target]}
    return cam


# --------------------------------------------------------------------------
# Mask output: the failure objects' index pass through the compositor

def setup_mask_output(scene, out_dir, stem):
    scene.use_nodes = True
    scene.render.use_compositing = True
    tree = scene.node_tree
    for node in list(tree.nodes):
        tree.nodes.remove(node)
    layers = tree.nodes.new("CompositorNodeRLayers")
    composite = tree.nodes.new("CompositorNodeComposite")
    tree.links.new(layers.outputs["Image"], composite.inputs["Image"])
    divide = tree.nodes.new("CompositorNodeMath")
    divide.operation = "DIVIDE"
    divide.inputs[1].default_value = 255.0
    tree.links.new(layers.outputs["IndexOB"], divide.inputs[0])
    out = tree.nodes.new("CompositorNodeOutputFile")
    out.base_path = out_dir
    out.format.file_format = "PNG"
    out.format.color_mode = "BW"
    out.format.color_depth = "8"
    out.file_slots[0].path = stem + "_mask"
    tree.links.new(divide.outputs[0], out.inputs[0])
    # The file output node works in display space: keep the index values raw.
    scene.view_settings.view_transform = scene.view_settings.view_transform
    return out


# --------------------------------------------------------------------------

def build(seed, index, progress=None, failure_at=None, amount=None, frame=None):
    """Builds one scene. For a sequence, (seed, index) fixes everything
    static, and progress / amount move the print and the failure."""
    rng = random.Random("%d/%d" % (seed, index))
    info = {"seed": seed, "index": index}
    family = rng.choices(list(CAMERA_FAMILIES), [w for w in CAMERA_FAMILIES.values()])[0]
    # Every draw happens whatever was passed in, so that the frames of one
    # sequence share the same printer, camera and light.
    drawn_failing = rng.random() < 0.5
    drawn_kind = rng.choices(list(FAILURE_KINDS), [w for w in FAILURE_KINDS.values()])[0]
    drawn_progress = rng.uniform(0.03, 1.0)
    drawn_amount = rng.uniform(0.3, 1.0)
    failing = drawn_failing if failure_at is None else failure_at
    kind = drawn_kind if failing else None
    progress = drawn_progress if progress is None else progress
    amount = drawn_amount if amount is None else amount
    bx, by = build_bed(rng, info)
    style, frame_h = build_frame(rng, info, bx, by)
    part_mat, strand_mat, colour = filament(rng, info)
    print_rng = random.Random("%d/%d/print" % (seed, index))
    parts = build_print(print_rng, "%d/%d" % (seed, index), info, bx, by, part_mat, progress)
    top = max(p[4] for p in parts)
    target_part = rng.choice(parts)
    nozzle = (target_part[1] + rng.uniform(-1, 1), target_part[2] + rng.uniform(-1, 1), top + 0.02)
    lift = rng.uniform(1, 6)
    fail_objs = []
    if kind is not None and amount > 0:
        fail_rng = random.Random("%d/%d/fail" % (seed, index))
        if kind in ("spaghetti", "air", "nest", "blob"):
            # The nozzle kept moving up after the failure.
            nozzle = (nozzle[0], nozzle[1], nozzle[2] + lift * amount)
        fail_objs = FAILURES[kind](fail_rng, parts, nozzle, strand_mat, (bx, by), amount)
        for i, obj in enumerate(fail_objs):
            obj.pass_index = 1 + min(i, 0)  # one failure, one index
    head_objs = build_head(rng, info, nozzle)
    build_gantry(rng, info, style, bx, by, frame_h, nozzle)
    build_room(rng, info, bx, by, frame_h)
    loc, target, fov = place_camera(rng, family, bx, by, frame_h, nozzle, style)
    build_clutter(rng, info, bx, by, frame_h, nozzle, colour)
    build_camera(rng, info, family, loc, target, fov)
    build_lights(rng, info, bx, by, frame_h, loc)
    scene = bpy.context.scene
    scene.view_settings.view_transform = rng.choice(["Filmic", "Standard", "Standard"])
    scene.view_settings.exposure = rng.uniform(-1.0, 1.0)
    info.update({"failure": kind, "progress": round(progress, 3), "amount": round(amount, 3),
                 "nozzle": [round(x, 2) for x in nozzle], "n_failure_objects": len(fail_objs)})
    if frame is not None:
        info["keyframe"] = frame
    del head_objs
    return info


def render_one(out_dir, stem, info_builder, res, samples):
    scene = reset_scene(res[0], res[1], samples)
    info = info_builder()
    setup_mask_output(scene, out_dir, stem)
    scene.render.filepath = os.path.join(out_dir, stem + ".png")
    bpy.ops.render.render(write_still=True)
    # The file output node appends the frame number.
    produced = os.path.join(out_dir, stem + "_mask0001.png")
    if os.path.exists(produced):
        os.replace(produced, os.path.join(out_dir, stem + "_mask.png"))
    info["resolution"] = list(res)
    tmp = os.path.join(out_dir, stem + ".json.tmp")
    with open(tmp, "w") as f:
        json.dump(info, f, sort_keys=True)
    os.replace(tmp, os.path.join(out_dir, stem + ".json"))  # written last: the image is done


def resolution(rng):
    aspect = rng.choice([(4, 3), (16, 9), (4, 3)])
    w = rng.choice([320, 352, 384])
    return w, int(w * aspect[1] / aspect[0]) // 2 * 2


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--sequence", action="store_true", help="render whole prints (see module doc)")
    ap.add_argument("--frames", type=int, default=24, help="frames per sequence")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for index in range(args.first, args.first + args.count):
        rng = random.Random("%d/%d/res" % (args.seed, index))
        res = resolution(rng)
        if not args.sequence:
            stem = "%06d" % index
            if os.path.exists(os.path.join(args.out, stem + ".json")):
                continue
            render_one(args.out, stem, lambda: build(args.seed, index), res, args.samples)
            print("synth: rendered %s" % stem, flush=True)
            continue
        # A sequence: half of them fail, at a frame in the second half.
        fails = rng.random() < 0.5
        onset = rng.randint(args.frames // 2, max(args.frames // 2, args.frames - 4)) if fails else None
        seq_dir = os.path.join(args.out, "%06d" % index)
        os.makedirs(seq_dir, exist_ok=True)
        p0 = rng.uniform(0.02, 0.1)
        for frame in range(args.frames):
            stem = "%03d" % frame
            if os.path.exists(os.path.join(seq_dir, stem + ".json")):
                continue
            failing = onset is not None and frame >= onset
            stop = p0 + (1 - p0) * ((onset if failing else frame) / (args.frames - 1))
            amount = min(1.0, (frame - onset + 1) / 4.0) if failing else 0.0
            builder = (lambda f=frame, s=stop, a=amount, fl=failing:
                       build(args.seed, index, progress=s, failure_at=fl, amount=a, frame=f))
            render_one(seq_dir, stem, builder, res, args.samples)
        with open(os.path.join(seq_dir, "sequence.json"), "w") as f:
            json.dump({"frames": args.frames, "onset": onset, "seed": args.seed, "index": index}, f)
        print("synth: rendered sequence %06d" % index, flush=True)


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else [])
