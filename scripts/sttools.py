"""Writing safetensors files without the `safetensors` package (not in Debian 12).

The layout is the official one: 8-byte little-endian header length, a JSON
header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}} padded
with spaces to a multiple of 8, then the tensors' bytes, contiguous, in order.
"""
import json
import os
import struct

import numpy as np

DTYPES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<i4"): "I32", np.dtype("<i8"): "I64",
          np.dtype("u1"): "U8", np.dtype("i1"): "I8", np.dtype("<i2"): "I16", np.dtype("<f2"): "F16"}
NP = {v: k for k, v in DTYPES.items()}


def save(path, tensors, metadata=None):
    """tensors: dict name -> numpy array (written in insertion order). Atomic: temp file + rename."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        dt = DTYPES.get(a.dtype)
        if dt is None:
            raise ValueError("tensor %s: unsupported dtype %s" % (name, a.dtype))
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp.%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path):
    """Returns (dict name -> numpy array, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + end], dtype=NP[e["dtype"]]).reshape(e["shape"])
    return out, meta
