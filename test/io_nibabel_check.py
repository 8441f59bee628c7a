#!/usr/bin/python3
"""Compare GigaReg's NIfTI I/O with nibabel.

For each image: io_dump (gr_image_read) must report the geometry nibabel
implies, converted to ITK's LPS space (negate the first two rows of nibabel's
RAS affine), the same voxel values and the same sum. With --vector, a
3-component field written by gr_image_write must load in nibabel as an
intent-VECTOR (1007) image of shape (nx, ny, nz, 1, 3) with the expected
values and affine, and a vector field written by nibabel must read back
through io_dump. Exit 77 (skipped) when nibabel is missing, or with
--skip-missing when none of the images exist.
"""
import argparse
import json
import os
import subprocess
import sys

try:
    import numpy as np
    import nibabel as nib
except ImportError as e:  # pragma: no cover
    print("SKIPPED: nibabel/numpy not available (%s)" % e)
    sys.exit(77)

TOL = 1e-4
LPS = np.diag([-1.0, -1.0, 1.0])
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def run_dump(io_dump, *args):
    p = subprocess.run([io_dump, *args], capture_output=True, text=True)
    if p.returncode != 0:
        fail("io_dump %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr.strip()))
        return None
    return json.loads(p.stdout)


def close(a, b, tol=TOL):
    return np.allclose(np.asarray(a, float), np.asarray(b, float), atol=tol, rtol=0)


def nibabel_geometry(img):
    """Geometry in LPS as ITK derives it: spacing from pixdim, direction from
    the normalised affine columns, origin from the translation."""
    aff = np.asarray(img.affine, float)
    m = LPS @ aff[:3, :3]
    origin = LPS @ aff[:3, 3]
    spacing = np.asarray(img.header.get_zooms()[:3], float)
    direction = m / np.linalg.norm(m, axis=0)
    return spacing, origin, direction


def compare_geometry(name, dump, img):
    spacing, origin, direction = nibabel_geometry(img)
    if list(map(int, dump["size"])) != list(img.shape[:3]):
        fail("%s: size %s vs nibabel %s" % (name, dump["size"], img.shape[:3]))
    if not close(dump["spacing"], spacing):
        fail("%s: spacing %s vs nibabel %s" % (name, dump["spacing"], spacing))
    if not close(dump["origin"], origin):
        fail("%s: origin %s vs nibabel %s" % (name, dump["origin"], origin))
    if not close(np.reshape(dump["direction"], (3, 3)), direction):
        fail("%s: direction %s vs nibabel %s" % (name, dump["direction"], direction.ravel()))


def compare_values(name, dump, data):
    """data indexed [i, j, k] (scalar) or [i, j, k, c] (vector)."""
    for s in dump["samples"]:
        i, j, k = s["index"]
        ref = data[i, j, k] if data.ndim == 3 else data[i, j, k, s["c"]]
        if abs(s["value"] - ref) > TOL * max(1.0, abs(ref)):
            fail("%s: voxel %s comp %d = %r, nibabel %r" % (name, s["index"], s["c"], s["value"], ref))
    ref_sum = float(np.sum(data, dtype=np.float64))
    if abs(dump["sum"] - ref_sum) > TOL * max(1.0, abs(ref_sum)):
        fail("%s: sum %r vs nibabel %r" % (name, dump["sum"], ref_sum))


def check_image(io_dump, path):
    name = os.path.basename(path)
    dump = run_dump(io_dump, path)
    if dump is None:
        return
    img = nib.load(path)
    compare_geometry(name, dump, img)
    data = np.asarray(img.get_fdata(dtype=np.float64))
    if data.ndim == 5:
        data = data[:, :, :, 0, :]
    compare_values(name, dump, data)
    print("ok: %s %s spacing %s" % (name, dump["size"], np.round(dump["spacing"], 6)))


def check_vectors(io_dump, tmp):
    os.makedirs(tmp, exist_ok=True)
    # ours -> nibabel
    for fname in ("ours_vector.nii.gz", "ours_vector.nii"):
        out = os.path.join(tmp, fname)
        dump = run_dump(io_dump, "--write-vector", out)
        if dump is None:
            continue
        img = nib.load(out)
        nx, ny, nz = map(int, dump["size"])
        if int(img.header["intent_code"]) != 1007:
            fail("%s: intent_code %d, expected 1007 (VECTOR)" % (fname, int(img.header["intent_code"])))
        if tuple(img.shape) != (nx, ny, nz, 1, 3):
            fail("%s: shape %s, expected %s" % (fname, img.shape, (nx, ny, nz, 1, 3)))
            continue
        if int(img.header["qform_code"]) != 1 or int(img.header["sform_code"]) != 1:
            fail("%s: qform/sform codes %d/%d, expected 1/1" % (
                fname, int(img.header["qform_code"]), int(img.header["sform_code"])))
        compare_geometry(fname, dump, img)
        # the qform must describe the same space as the sform
        if not close(img.header.get_qform(), img.header.get_sform(), 1e-4):
            fail("%s: qform and sform disagree" % fname)
        data = np.asarray(img.dataobj, dtype=np.float64)
        i, j, k = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
        for c in range(3):
            want = c * 1000.0 + i + 10.0 * j + 100.0 * k - 0.25
            if not np.array_equal(data[:, :, :, 0, c], want):
                fail("%s: component %d values differ" % (fname, c))
        print("ok: %s read by nibabel, intent %d, shape %s" % (fname, int(img.header["intent_code"]), img.shape))

    # nibabel -> ours (RAS affine with rotation and a flip)
    nx, ny, nz = 6, 5, 4
    vals = np.random.default_rng(7).normal(size=(nx, ny, nz, 1, 3)).astype(np.float32)
    th = 0.35
    rot = np.array([[np.cos(th), 0, np.sin(th)], [0, 1, 0], [-np.sin(th), 0, np.cos(th)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([1.2, -0.8, 2.0])
    aff[:3, 3] = [5.5, -7.25, 12.0]
    img = nib.Nifti1Image(vals, aff)
    img.header.set_intent("vector")
    img.header.set_qform(aff, code=1)
    img.header.set_sform(aff, code=1)
    path = os.path.join(tmp, "nibabel_vector.nii.gz")
    nib.save(img, path)
    dump = run_dump(io_dump, path)
    if dump is not None:
        img = nib.load(path)
        if dump["ncomp"] != 3:
            fail("nibabel_vector: ncomp %d" % dump["ncomp"])
        compare_geometry("nibabel_vector", dump, img)
        compare_values("nibabel_vector", dump, np.asarray(img.dataobj, np.float64)[:, :, :, 0, :])
        print("ok: nibabel vector field read by io_dump")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io-dump", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--vector", action="store_true")
    ap.add_argument("--skip-missing", action="store_true")
    ap.add_argument("images", nargs="*")
    a = ap.parse_args()
    present = [p for p in a.images if os.path.exists(p)]
    for p in a.images:
        if p not in present:
            if a.skip_missing:
                print("missing (skipped): %s" % p)
            else:
                fail("missing test image %s" % p)
    if a.skip_missing and not present and not a.vector:
        print("SKIPPED: none of the images exist")
        return 77
    for p in present:
        check_image(a.io_dump, p)
    if a.vector:
        check_vectors(a.io_dump, a.tmp)
    if failures:
        print("%d failure(s)" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
