"""Read and write wsac tensor streams from Python (formats/tensor-stream.md).

Only needs python3-msgpack and numpy. Used by tests and reference scripts;
the C filters never need Python.

    from wsacstream import read_stream, write_stream
    hdr, records, trailer = read_stream(open("x.mp", "rb"))
    write_stream(f, "mytool", [{"key": "a", "emb": np.zeros(4, np.float32)}])
"""
import msgpack
import numpy as np

DTYPES = {"f32": "<f4", "f64": "<f8", "i8": "i1", "u8": "u1", "i16": "<i2", "i32": "<i4", "i64": "<i8"}
NAMES = {np.dtype(v).str: k for k, v in DTYPES.items()}
NAMES[np.dtype("i1").str] = "i8"
NAMES[np.dtype("u1").str] = "u8"


def encode_tensor(a):
    a = np.array(a, copy=False, order="C")  # keeps 0-d arrays 0-d
    name = NAMES.get(a.dtype.newbyteorder("<").str if a.dtype.byteorder == ">" else a.dtype.str)
    if name is None:
        raise ValueError("unsupported dtype %s" % a.dtype)
    return {"dtype": name, "shape": list(a.shape), "data": a.astype(DTYPES[name], copy=False).tobytes()}


def decode_tensor(m):
    a = np.frombuffer(m["data"], dtype=DTYPES[m["dtype"]])
    return a.reshape(m["shape"])


def header(tool, params=None):
    return {"format": "wsac-stream", "version": 1, "tool": tool, "params": params or {}}


def pack_record(rec):
    out = {}
    for k, v in rec.items():
        out[k] = encode_tensor(v) if isinstance(v, np.ndarray) else v
    return msgpack.packb(out, use_bin_type=True)


def write_stream(f, tool, records, params=None, trailer=True, errors=0, failed=()):
    f.write(msgpack.packb(header(tool, params), use_bin_type=True))
    n = 0
    for rec in records:
        f.write(pack_record(rec))
        n += 1
    if trailer:
        f.write(msgpack.packb({"end": True, "records": n, "errors": errors, "failed": list(failed)},
                              use_bin_type=True))
    f.flush()


def iter_objects(f):
    up = msgpack.Unpacker(f, raw=False, max_buffer_size=2**32 - 1)
    for obj in up:
        yield obj


def read_stream(f, tensors=True):
    """Returns (first header, records, last trailer or None). Tensor fields become arrays."""
    hdr, trailer, records = None, None, []
    for obj in iter_objects(f):
        if "key" in obj:
            if tensors:
                obj = {k: (decode_tensor(v) if isinstance(v, dict) and "dtype" in v else v) for k, v in obj.items()}
            records.append(obj)
        elif "format" in obj:
            hdr = hdr or obj
            trailer = None
        elif obj.get("end"):
            trailer = obj
    return hdr, records, trailer
