"""Read tensors and arrays out of pickles without running them.

    import safepickle
    obj = safepickle.load("gap.pkl")     # arrays (numpy), in dicts/lists/tuples

Reads, with numpy only (torch is not imported):
  * torch.save files, zip (torch >= 1.6) and legacy (_use_new_zipfile_serialization=False);
  * plain pickles of torch tensors (pickle.dump(tensor, f), what WSAC's
    train.py --modality_gap_path pickle.load()s) and of numpy arrays;
  * .npy files (np.load with allow_pickle=False).

The unpickler's find_class allows only what a tensor or an array needs to be
rebuilt: torch._utils._rebuild_tensor_v2 / _rebuild_tensor /
_rebuild_parameter(_with_state), the storage classes (torch.FloatStorage,
HalfStorage, ...), torch.storage._load_from_bytes (a plain pickle of a
tensor carries its storage as a legacy torch.save blob, read by this same
code), collections.OrderedDict, numpy's ndarray/dtype/_reconstruct/
_frombuffer and _codecs.encode (protocol 2 writes bytes with it). Each of
those is replaced by a function of this module that builds numpy arrays;
nothing the pickle names is ever imported. Any other global (os.system,
builtins.eval, a model class, ...) raises UnsafePickle before anything runs.
Object arrays are refused too. Tensors come back as TorchTensor (an ndarray
subclass), arrays as plain ndarrays; bfloat16 is widened to float32.
"""
import collections
import io
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

STORAGES = {
    "FloatStorage": "<f4", "HalfStorage": "<f2", "DoubleStorage": "<f8", "BFloat16Storage": "bf16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class UnsafePickle(Exception):
    """The file names something that is not a tensor or an array: refused, unexecuted."""


class FormatError(Exception):
    """The file is not a readable pickle / torch.save file."""


class TorchTensor(np.ndarray):
    """A torch tensor read back as a numpy array (the class says where it came from)."""


class _StorageType:
    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGES[name]


class _Storage:
    """A storage's elements: .array (1-d numpy) once its bytes are known."""
    __slots__ = ("stype", "numel", "array")

    def __init__(self, stype, numel):
        self.stype, self.numel, self.array = stype, numel, None

    def fill(self, raw, byteorder="little"):
        dt = np.dtype("<u2" if self.stype.dtype == "bf16" else self.stype.dtype)
        if byteorder == "big":
            dt = dt.newbyteorder(">")
        need = self.numel * dt.itemsize
        if len(raw) < need:
            raise FormatError("a %s of %d elements has only %d bytes" % (self.stype.name, self.numel, len(raw)))
        a = np.frombuffer(raw, dtype=dt, count=self.numel)
        if self.stype.dtype == "bf16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        self.array = a.astype(a.dtype.newbyteorder("="), copy=False)


class _LazyTensor:
    """_rebuild_tensor_v2's arguments, turned into an array once every storage is read."""
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise UnsafePickle("a tensor rebuilt from %s, not from a storage" % type(storage).__name__)
        if not (isinstance(offset, int) and all(isinstance(x, int) for x in tuple(size) + tuple(stride))):
            raise FormatError("a tensor with a malformed offset, size or stride")
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self):
        a = self.storage.array
        if a is None:
            raise FormatError("a tensor whose storage bytes are missing")
        if len(self.size) != len(self.stride) or self.offset < 0 or any(n < 0 for n in self.size) \
                or any(s < 0 for s in self.stride):
            raise FormatError("a tensor with a malformed size %s / stride %s" % (self.size, self.stride))
        if 0 in self.size:
            return np.zeros(self.size, a.dtype).view(TorchTensor)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= len(a):
            raise FormatError("a tensor reaches element %d of a storage of %d" % (last, len(a)))
        v = np.lib.stride_tricks.as_strided(a[self.offset:], shape=self.size,
                                            strides=[s * a.itemsize for s in self.stride], writeable=False)
        return np.array(v).view(TorchTensor)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride):
    return _LazyTensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, _LazyTensor):
        raise UnsafePickle("a Parameter around %s, not a tensor" % type(data).__name__)
    return data


class _NdarrayName:
    """What the pickle gets for numpy.ndarray: a name _reconstruct accepts, never callable."""
    __slots__ = ()


_NDARRAY = _NdarrayName()


def _reconstruct(subtype, shape, dtype):
    if subtype is not _NDARRAY:
        raise UnsafePickle("numpy _reconstruct of %r, not ndarray" % (subtype,))
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise UnsafePickle("a numpy array of Python objects")
    return np.ndarray.__new__(np.ndarray, shape, dt)


def _frombuffer(buf, dtype, shape, order):
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise UnsafePickle("a numpy array of Python objects")
    a = np.frombuffer(bytes(buf), dtype=dt)
    return np.array(a.reshape(shape, order=order))


def _dtype(spec, align=False, copy=False):
    dt = np.dtype(spec, align, copy)
    if dt.hasobject:
        raise UnsafePickle("a numpy dtype of Python objects")
    return dt


def _codecs_encode(s, encoding="utf-8", errors="strict"):
    if not isinstance(s, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickle("_codecs.encode(%s, %r): only latin1 strings (protocol 2 bytes)" % (type(s).__name__, encoding))
    return s.encode("latin1")


def _load_from_bytes(b):
    if not isinstance(b, (bytes, bytearray)):
        raise UnsafePickle("torch.storage._load_from_bytes of %s" % type(b).__name__)
    obj = _legacy(io.BytesIO(bytes(b)))
    if not isinstance(obj, _Storage):
        raise UnsafePickle("a pickled storage that holds %s" % type(obj).__name__)
    return obj


ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _codecs_encode,
}


class _Unpickler(pickle.Unpickler):
    """find_class: the allow-list above and nothing else; persistent ids: storages."""

    def __init__(self, f, persistent=None):
        super().__init__(f)
        self._persistent = persistent

    def find_class(self, module, name):
        if module == "torch" and name in STORAGES:
            return _StorageType(name)
        fn = ALLOWED.get((module, name))
        if fn is None:
            raise UnsafePickle("the pickle calls %s.%s, which is not part of a tensor or an array; "
                               "nothing was run" % (module, name))
        return fn

    def persistent_load(self, pid):
        if self._persistent is None:
            raise UnsafePickle("a persistent id %r outside a torch.save file" % (pid,))
        return self._persistent(pid)


def _storage_id(pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        kind = pid[0] if isinstance(pid, tuple) and pid else pid
        raise UnsafePickle("a torch.save persistent id of kind %r (only tensor storages are read)" % (kind,))
    stype, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(stype, _StorageType) or not isinstance(numel, int) or numel < 0:
        raise FormatError("a malformed storage id %r" % (pid[:5],))
    return stype, str(key), numel


def _restricted(f, persistent=None):
    try:
        return _Unpickler(f, persistent).load()
    except (UnsafePickle, FormatError):
        raise
    except Exception as e:  # noqa: BLE001 - a malformed pickle, whatever pickle raises
        raise FormatError("not a readable pickle (%s: %s)" % (type(e).__name__, e))


def _legacy(f, magic_read=False):
    """torch.save's legacy format: magic, protocol, sys_info, the object, storage keys, storage bytes."""
    if not magic_read and not (type(m := _restricted(f)) is int and m == LEGACY_MAGIC):
        raise FormatError("not a torch.save file (bad magic number)")
    proto = _restricted(f)
    if proto != 1001:
        raise FormatError("legacy torch.save protocol %r (1001 expected)" % (proto,))
    info = _restricted(f)
    little = not isinstance(info, dict) or info.get("little_endian", True)
    storages = {}

    def persistent(pid):
        stype, key, numel = _storage_id(pid)
        if key not in storages:
            storages[key] = _Storage(stype, numel)
        st = storages[key]
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            raise FormatError("a legacy storage view (torch < 1.0) is not supported")
        return st

    obj = _restricted(f, persistent)
    keys = _restricted(f)
    if not isinstance(keys, list):
        raise FormatError("legacy torch.save: malformed storage key list")
    order = "<" if little else ">"
    for key in keys:
        st = storages.get(str(key))
        if st is None:
            raise FormatError("legacy torch.save: storage %r is not used by the object" % (key,))
        head = f.read(8)
        if len(head) != 8:
            raise FormatError("legacy torch.save: truncated before storage %r" % (key,))
        (n,) = struct.unpack(order + "q", head)
        if n != st.numel:
            raise FormatError("legacy torch.save: storage %r has %d elements, %d expected" % (key, n, st.numel))
        size = np.dtype("<u2" if st.stype.dtype == "bf16" else st.stype.dtype).itemsize * n
        raw = f.read(size)
        if len(raw) != size:
            raise FormatError("legacy torch.save: storage %r is truncated" % (key,))
        st.fill(raw, "little" if little else "big")
    return obj


def _zip(path):
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise FormatError("a broken zip archive (%s)" % e)
    with z:
        pkl = [n for n in z.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise FormatError("a zip archive without one NAME/data.pkl: not a torch.save file")
        prefix = pkl[0][:-len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in z.namelist():
            byteorder = z.read(prefix + "byteorder").decode("ascii", "replace").strip()
        storages = {}

        def persistent(pid):
            stype, key, numel = _storage_id(pid)
            if key not in storages:
                name = prefix + "data/" + key
                try:
                    raw = z.read(name)
                except KeyError:
                    raise FormatError("storage %s is missing from the archive" % name)
                st = _Storage(stype, numel)
                st.fill(raw, byteorder)
                storages[key] = st
            return storages[key]

        return _restricted(io.BytesIO(z.read(pkl[0])), persistent)


def _finish(obj, depth=0):
    """Lazy tensors become arrays; containers are walked; anything else is refused."""
    if depth > 100:
        raise FormatError("containers nested more than 100 deep")
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UnsafePickle("a numpy array of Python objects")
        return obj
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _finish(v, depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_finish(v, depth + 1) for v in obj)
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, _Storage):
        return obj.array
    raise FormatError("the file holds %s, not a tensor or an array" % type(obj).__name__)


def load(path):
    """The object in PATH with every tensor/array as numpy (see the module doc)."""
    with open(path, "rb") as f:
        head = f.read(6)
        f.seek(0)
        if head[:4] == b"PK\x03\x04":
            return _finish(_zip(path))
        if head == b"\x93NUMPY":
            try:
                return np.load(f, allow_pickle=False)
            except ValueError as e:
                raise FormatError(".npy: %s" % e)
        if not head:
            raise FormatError("an empty file")
        first = _restricted(f)
        if type(first) is int and first == LEGACY_MAGIC:
            return _finish(_legacy(f, magic_read=True))
        return _finish(first)
