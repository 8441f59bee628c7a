#!/usr/bin/env python3
"""Independent checks of what `gigareg` hands to 3D Slicer and of its -qa pictures.

  slicer_check.py xml FILE [--help-text FILE]   Slicer Execution Model rules (see below)
  slicer_check.py progress STDOUT              Slicer <filter-*> progress lines
  slicer_check.py field FIELD.nii.gz MOVING.nrrd RESULT.nrrd
        the displacement field, read with nibabel (not our reader), applied to the
        moving image reproduces gigareg's output volume: LPS vectors, fixed -> moving
  slicer_check.py tfm TX.tfm MOVING.nrrd RESULT.nrrd   the same for an ITK affine .tfm
  slicer_check.py png FILE W H                 a valid 8-bit RGB PNG of W x H pixels
  slicer_check.py differ A.png B.png FRACTION  at least FRACTION of the pixels differ

The XML rules are those of SlicerExecutionModel's ModuleDescription.xsd and of
ModuleDescriptionParser.cxx, which is what Slicer actually runs (the XSD itself
is stricter than the parser in places real modules rely on, e.g. it forbids
<longflag> on <image>, so validating against it would reject BRAINSFit too):
root <executable> with category, title, description, version,
documentation-url, license, contributor (in that order) and one or more
<parameters>; only known parameter tags; every parameter has a C-identifier
<name>, a <label>, a <description>, and a one-character <flag> and/or a
C-identifier <longflag>, or else an <index> (never both); names and flags
unique; image/transform/file/geometry/table/measurement carry a <channel> of
input or output; attribute names and values from the parser's lists;
enumerations list their elements and default to one of them; numeric defaults
parse and sit inside their constraints; `reference` names another parameter.
"""
import math
import re
import struct
import sys
import zlib
import xml.etree.ElementTree as ET

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER = ["category", "title", "description", "version", "documentation-url", "license", "contributor"]
OPTIONAL_HEADER = {"acknowledgements", "location", "index"}
SCALARS = {"integer", "float", "double", "boolean", "string", "integer-vector", "float-vector", "double-vector",
           "string-vector", "boolean-vector"}
ENUMS = {"string-enumeration", "integer-enumeration", "float-enumeration", "double-enumeration"}
CHANNELLED = {"image", "transform", "file", "geometry", "table", "measurement"}
POINTS = {"point", "point-vector", "region", "region-vector"}
PARAM_TAGS = SCALARS | ENUMS | CHANNELLED | POINTS | {"directory"}
CHILDREN = {"name", "flag", "longflag", "description", "label", "default", "channel", "index", "element",
            "constraints", "reference"}
ATTRS = {
    "image": {"multiple", "fileExtensions", "type", "hidden", "reference"},
    "transform": {"multiple", "fileExtensions", "type", "reference", "hidden"},
    "file": {"multiple", "fileExtensions"},
    "directory": {"multiple", "hidden"},
    "geometry": {"multiple", "fileExtensions", "type", "reference", "hidden"},
    "table": {"multiple", "fileExtensions", "type", "reference", "hidden"},
    "measurement": {"multiple", "fileExtensions", "type", "reference", "hidden"},
}
TYPES = {
    "image": {"scalar", "label", "tensor", "diffusion-weighted", "vector", "signal", "multichannel",
              "dynamic-contrast-enhanced", "any"},
    "transform": {"linear", "bspline", "nonlinear"},
    "geometry": {"fiberbundle", "model"},
}
# Flags GenerateCLP gives every module; a parameter must not take them.
RESERVED_LONG = {"xml", "echo", "help", "version", "returnparameterfile", "processinformationaddress"}
RESERVED_SHORT = {"h"}


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def text(e):
    return (e.text or "").strip() if e is not None else ""


def check_xml(path, help_text=None):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        fail(f"not well-formed XML: {err}")
    if root.tag != "executable":
        fail(f"root element is <{root.tag}>, not <executable>")
    if root.attrib:
        fail(f"<executable> takes no attributes, has {root.attrib}")
    kids = [c.tag for c in root]
    head = [t for t in kids if t in HEADER]
    if head != HEADER:
        fail(f"header elements must be {HEADER} in this order, found {head}")
    for t in HEADER:
        if not text(root.find(t)):
            fail(f"<{t}> is empty")
    if text(root.find("license")) != "Apache-2.0":
        fail("license is not Apache-2.0")
    if text(root.find("category")) != "Registration":
        fail("category is not Registration")
    groups = root.findall("parameters")
    if not groups:
        fail("no <parameters>")
    for t in kids:
        if t not in HEADER and t not in OPTIONAL_HEADER and t != "parameters":
            fail(f"unknown element <{t}> in <executable>")
    if kids.index("parameters") < kids.index("contributor"):
        fail("<parameters> before the header")
    names, shorts, longs, params = set(), set(), set(), []
    for g in groups:
        for a, v in g.attrib.items():
            if a != "advanced" or v not in ("true", "false"):
                fail(f"<parameters> attribute {a}={v!r}")
        if not text(g.find("label")):
            fail("a <parameters> group has no <label>")
        for p in g:
            if p.tag in ("label", "description"):
                continue
            if p.tag not in PARAM_TAGS:
                fail(f"unknown parameter element <{p.tag}>")
            params.append(p)
    for p in params:
        tag = p.tag
        for c in p:
            if c.tag not in CHILDREN:
                fail(f"<{tag}> has unknown child <{c.tag}>")
            if c.tag not in ("element",) and len(p.findall(c.tag)) > 1:
                fail(f"<{tag}> has more than one <{c.tag}>")
        name = text(p.find("name"))
        if not IDENT.match(name):
            fail(f"<{tag}> name {name!r} is not a C identifier")
        if name in names:
            fail(f"duplicate parameter name {name}")
        names.add(name)
        for req in ("label", "description"):
            if not text(p.find(req)):
                fail(f"parameter {name} has no <{req}>")
        flag = text(p.find("flag")).lstrip("-")
        lflag = text(p.find("longflag")).lstrip("-")
        index = text(p.find("index"))
        if index and (flag or lflag):
            fail(f"parameter {name} has both an index and a flag")
        if not (flag or lflag or index):
            fail(f"parameter {name} has neither flag, longflag nor index")
        if p.find("flag") is not None and len(flag) != 1:
            fail(f"parameter {name}: <flag> {flag!r} must be one character")
        if p.find("longflag") is not None and not IDENT.match(lflag):
            fail(f"parameter {name}: <longflag> {lflag!r} must be a C identifier")
        if index and not index.isdigit():
            fail(f"parameter {name}: <index> {index!r}")
        if flag:
            if flag in shorts or flag in RESERVED_SHORT:
                fail(f"flag -{flag} used twice or reserved")
            shorts.add(flag)
        if lflag:
            if lflag in longs or lflag.lower() in RESERVED_LONG:
                fail(f"long flag --{lflag} used twice or reserved")
            longs.add(lflag)
            if help_text is not None and ("--" + lflag) not in help_text:
                fail(f"--{lflag} is in the XML but not in gigareg --help")
        allowed = ATTRS.get(tag, {"multiple", "hidden"} | ({"coordinateSystem", "type"} if tag in POINTS else set()))
        for a, v in p.attrib.items():
            if a not in allowed:
                fail(f"<{tag}> {name}: attribute {a} not accepted by the parser")
            if a in ("multiple", "hidden") and v not in ("true", "false"):
                fail(f"{name}: {a}={v!r}")
            if a == "type" and tag in TYPES and v not in TYPES[tag]:
                fail(f"{name}: type={v!r} not one of {sorted(TYPES[tag])}")
            if a == "fileExtensions" and not all(x.strip().startswith(".") for x in v.split(",")):
                fail(f"{name}: fileExtensions={v!r}")
        channel = text(p.find("channel"))
        if tag in CHANNELLED and channel not in ("input", "output"):
            fail(f"<{tag}> {name}: <channel> must be input or output, is {channel!r}")
        default = p.find("default")
        if tag in ENUMS:
            elements = [text(e) for e in p.findall("element")]
            if not elements:
                fail(f"enumeration {name} has no <element>")
            if default is None or text(default) not in elements:
                fail(f"enumeration {name}: default {text(default)!r} not among {elements}")
        elif p.findall("element"):
            fail(f"<element> in non-enumeration {name}")
        if tag in ("integer", "float", "double") and default is not None:
            try:
                d = int(text(default)) if tag == "integer" else float(text(default))
            except ValueError:
                fail(f"{name}: default {text(default)!r} is not a {tag}")
            cons = p.find("constraints")
            if cons is not None:
                kids_c = [c.tag for c in cons]
                if kids_c != ["minimum", "maximum", "step"]:
                    fail(f"{name}: constraints must be minimum, maximum, step; got {kids_c}")
                lo, hi = float(text(cons.find("minimum"))), float(text(cons.find("maximum")))
                if not lo <= d <= hi:
                    fail(f"{name}: default {d} outside [{lo}, {hi}]")
        elif p.find("constraints") is not None and tag not in SCALARS:
            fail(f"<constraints> in {tag} {name}")
        if tag == "boolean" and default is not None and text(default) not in ("true", "false"):
            fail(f"boolean {name} default {text(default)!r}")
    for p in params:
        ref = p.attrib.get("reference")
        if ref is not None and ref not in names:
            fail(f"{text(p.find('name'))}: reference={ref!r} names no parameter")
    wanted = {"fixed", "moving", "fixedMask", "movingMask", "outputVolume", "outputTransform", "preset",
              "parameterFile", "device", "iterations"}
    if not wanted <= longs:
        fail(f"missing long flags: {sorted(wanted - longs)}")
    tx = [p for p in params if p.tag == "transform" and text(p.find("channel")) == "output"]
    if not tx:
        fail("no output <transform>")
    print(f"ok: {len(params)} parameters in {len(groups)} groups, long flags {sorted(longs)}")


def check_progress(path):
    lines = [l.rstrip("\n") for l in open(path, encoding="utf-8")]
    if not lines or lines[0] != "<filter-start>":
        fail("stdout does not start with <filter-start>")
    if lines[-1] != "</filter-end>":
        fail("stdout does not end with </filter-end>")
    pats = [re.compile(p) for p in (
        r"^<filter-start>$", r"^</filter-start>$", r"^<filter-end>$", r"^</filter-end>$",
        r"^<filter-name>gigareg</filter-name>$", r"^<filter-comment>[^<>]*</filter-comment>$",
        r"^<filter-progress>([0-9.eE+-]+)</filter-progress>$",
        r"^<filter-stage-progress>([0-9.eE+-]+)</filter-stage-progress>$", r"^<filter-time>[0-9.]+</filter-time>$")]
    last, nprog, nstage = -1.0, 0, 0
    for l in lines:
        m = None
        for p in pats:
            m = p.match(l)
            if m:
                break
        if not m:
            fail(f"line is not a Slicer progress line: {l!r}")
        if l.startswith("<filter-progress>"):
            v = float(m.group(1))
            if not (0.0 <= v <= 1.0) or v < last:
                fail(f"progress {v} outside [0, 1] or going back (after {last})")
            last, nprog = v, nprog + 1
        if l.startswith("<filter-stage-progress>"):
            v = float(m.group(1))
            if not 0.0 <= v <= 1.0:
                fail(f"stage progress {v}")
            nstage += 1
    if last != 1.0 or nprog < 5 or nstage < 3:
        fail(f"progress ended at {last} after {nprog} lines ({nstage} stage lines)")
    if lines.count("<filter-start>") != 1 or lines.count("<filter-end>") != 1:
        fail("one <filter-start> and one <filter-end> expected")
    print(f"ok: {nprog} progress lines, {nstage} stage-progress lines")


# ---- images ---------------------------------------------------------------------------

def read_nrrd(path):
    """Minimal NRRD reader for the files gigareg writes (attached, raw or gzip)."""
    import numpy as np
    raw = open(path, "rb").read()
    end = raw.index(b"\n\n")
    head = raw[:end].decode("ascii").split("\n")
    if not head[0].startswith("NRRD"):
        fail(f"{path}: not NRRD")
    f = {}
    for l in head[1:]:
        if l.startswith("#") or ":" not in l:
            continue
        k, v = l.split(":", 1)
        f[k.strip()] = v.strip().lstrip("=").strip()
    if f.get("space") != "left-posterior-superior":
        fail(f"{path}: space {f.get('space')!r}")
    sizes = [int(x) for x in f["sizes"].split()]
    dirs = re.findall(r"\(([^)]*)\)", f["space directions"])
    D = np.array([[float(x) for x in d.split(",")] for d in dirs]).T  # columns: axis vectors (spacing included)
    origin = np.array([float(x) for x in re.findall(r"\(([^)]*)\)", f["space origin"])[0].split(",")])
    dtype = {"float": "<f4", "double": "<f8", "short": "<i2", "unsigned char": "u1", "ushort": "<u2"}[f["type"]]
    data = raw[end + 2:]
    if f["encoding"] in ("gzip", "gz"):
        data = zlib.decompress(data, 16 + zlib.MAX_WBITS)
    elif f["encoding"] != "raw":
        fail(f"{path}: encoding {f['encoding']}")
    arr = np.frombuffer(data, dtype=dtype).astype(np.float64).reshape(sizes[::-1]).transpose(2, 1, 0)
    return arr, D, origin


def trilinear(arr, idx):
    """ITK-style: inside when the continuous index is within [-0.5, n-0.5], clamped; NaN outside."""
    import numpy as np
    n = np.array(arr.shape)
    inside = np.all((idx >= -0.5) & (idx <= n[:, None] - 0.5), axis=0)
    c = np.clip(idx, 0, (n - 1)[:, None])
    i0 = np.minimum(np.floor(c).astype(int), np.maximum(n - 2, 0)[:, None])
    fr = c - i0
    out = np.zeros(idx.shape[1])
    for k in range(8):
        b = [(k >> a) & 1 for a in range(3)]
        w = np.ones(idx.shape[1])
        j = []
        for a in range(3):
            w *= fr[a] if b[a] else 1 - fr[a]
            j.append(np.minimum(i0[a] + b[a], n[a] - 1))
        out += w * arr[j[0], j[1], j[2]]
    out[~inside] = np.nan
    return out


def compare_resampled(mapped_lps, moving_path, result_path):
    """mapped_lps: 3 x N moving points (LPS) of the result's voxels, x-fastest order."""
    import numpy as np
    mov, MD, morig = read_nrrd(moving_path)
    res, _, _ = read_nrrd(result_path)
    idx = np.linalg.solve(MD, mapped_lps - morig[:, None])
    expect = trilinear(mov, idx)
    got = res.transpose(2, 1, 0).reshape(-1)
    ok = ~np.isnan(expect)
    if ok.mean() < 0.5:
        fail(f"only {ok.mean():.0%} of the result maps inside the moving image")
    rng = float(np.nanmax(mov) - np.nanmin(mov))
    err = np.abs(expect[ok] - got[ok]) / rng
    print(f"inside {ok.mean():.1%}; |independent - gigareg| / range: mean {err.mean():.2e}, "
          f"99th pct {np.percentile(err, 99):.2e}, max {err.max():.2e}")
    if err.mean() > 1e-3 or np.percentile(err, 99) > 1e-2:
        fail("the transform file does not reproduce gigareg's output volume")


def fixed_points_lps(shape, affine_ras):
    import numpy as np
    nx, ny, nz = shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])  # x-fastest
    ras = affine_ras @ ijk
    return np.diag([-1.0, -1.0, 1.0]) @ ras[:3]


def check_field(field_path, moving_path, result_path):
    import numpy as np
    import nibabel as nib
    img = nib.load(field_path)
    h = img.header
    if int(h["intent_code"]) != 1007:
        fail(f"intent code {int(h['intent_code'])}, not 1007 (vector)")
    if img.ndim != 5 or img.shape[3] != 1 or img.shape[4] != 3:
        fail(f"vector field shape {img.shape}, expected (x, y, z, 1, 3)")
    d = np.asarray(img.dataobj, dtype=np.float64)[:, :, :, 0, :]
    x = fixed_points_lps(d.shape[:3], img.affine)
    disp = d.transpose(3, 2, 1, 0).reshape(3, -1)  # LPS components, x-fastest
    print(f"field {d.shape[:3]}, |d| up to {np.sqrt((disp ** 2).sum(0)).max():.2f} mm")
    compare_resampled(x + disp, moving_path, result_path)
    print("ok: nibabel-read LPS displacement field reproduces the output volume")


def check_tfm(tfm_path, moving_path, result_path):
    import numpy as np
    lines = open(tfm_path).read().split("\n")
    if lines[0] != "#Insight Transform File V1.0":
        fail("not an ITK transform file")
    kv = dict(l.split(": ", 1) for l in lines if ": " in l)
    if kv.get("Transform") != "AffineTransform_double_3_3":
        fail(f"transform type {kv.get('Transform')}")
    p = [float(v) for v in kv["Parameters"].split()]
    c = np.array([float(v) for v in kv["FixedParameters"].split()])
    M, t = np.array(p[:9]).reshape(3, 3), np.array(p[9:])
    res, RD, rorig = read_nrrd(result_path)
    nx, ny, nz = res.shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    x = RD @ np.stack([i.ravel(), j.ravel(), k.ravel()]) + rorig[:, None]
    y = M @ (x - c[:, None]) + (c + t)[:, None]  # ITK: T(x) = M (x - c) + c + t, fixed -> moving
    compare_resampled(y, moving_path, result_path)
    print("ok: ITK affine reproduces the output volume")


# ---- PNG ----------------------------------------------------------------------------------

def read_png(path):
    raw = open(path, "rb").read()
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path}: no PNG signature")
    pos, chunks = 8, []
    while pos < len(raw):
        if pos + 12 > len(raw):
            fail(f"{path}: truncated chunk")
        n, = struct.unpack(">I", raw[pos:pos + 4])
        kind, body = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", raw[pos + 8 + n:pos + 12 + n])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            fail(f"{path}: bad CRC in {kind!r}")
        chunks.append((kind, body))
        pos += 12 + n
    if chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        fail(f"{path}: chunk order {[c[0] for c in chunks]}")
    w, h, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", chunks[0][1])
    if (depth, ctype, comp, filt, inter) != (8, 2, 0, 0, 0):
        fail(f"{path}: not 8-bit RGB non-interlaced ({depth}, {ctype}, {inter})")
    data = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    stride = w * 3
    if len(data) != h * (stride + 1):
        fail(f"{path}: {len(data)} bytes of image data for {w} x {h}")
    rows, prev = [], bytearray(stride)
    for y in range(h):  # undo the per-row filters (PNG spec, section 9)
        f, line = data[y * (stride + 1)], bytearray(data[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - 3] if x >= 3 else 0
            b, c = prev[x], prev[x - 3] if x >= 3 else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            elif f != 0:
                fail(f"{path}: filter type {f}")
        rows.append(bytes(line))
        prev = line
    return w, h, rows


def check_png(path, w, h):
    pw, ph, rows = read_png(path)
    if (pw, ph) != (w, h):
        fail(f"{path}: {pw} x {ph}, expected {w} x {h}")
    colours = len(set(rows[ph // 2][i:i + 3] for i in range(0, 3 * pw, 3)))
    if colours < 3:  # a blank or single-colour picture is not a picture of anything
        fail(f"{path}: the middle row has only {colours} colours")
    print(f"ok: {path} {pw} x {ph}")


def check_differ(a, b, fraction):
    wa, ha, ra = read_png(a)
    wb, hb, rb = read_png(b)
    if (wa, ha) != (wb, hb):
        fail("sizes differ")
    diff = sum(ra[y][i:i + 3] != rb[y][i:i + 3] for y in range(ha) for i in range(0, 3 * wa, 3))
    frac = diff / (wa * ha)
    print(f"{frac:.1%} of the pixels differ between {a} and {b}")
    if frac < fraction:
        fail("the pictures are (nearly) the same")


def main(argv):
    cmd = argv[1]
    if cmd == "xml":
        help_text = open(argv[3]).read() if len(argv) > 3 else None
        check_xml(argv[2], help_text)
    elif cmd == "progress":
        check_progress(argv[2])
    elif cmd == "field":
        check_field(argv[2], argv[3], argv[4])
    elif cmd == "tfm":
        check_tfm(argv[2], argv[3], argv[4])
    elif cmd == "png":
        check_png(argv[2], int(argv[3]), int(argv[4]))
    elif cmd == "differ":
        check_differ(argv[2], argv[3], float(argv[4]))
    else:
        fail(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
