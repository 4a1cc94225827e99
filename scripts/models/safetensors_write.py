"""Minimal safetensors writer (the format: 8-byte little-endian header length N,
N bytes of JSON header {name: {dtype, shape, data_offsets:[begin,end]}, ...,
"__metadata__": {str: str}}, then the raw little-endian tensor bytes).

There is no safetensors Python package on Debian 12, so we write it ourselves.
Tensors are written in sorted name order, contiguous, header padded with spaces
to a multiple of 8 bytes (as the reference implementation does) so that data
starts aligned.
"""

import json
import os

import numpy as np

_DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("float64"): "F64",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
}


def save_file(tensors, path, metadata=None):
    """tensors: {name: numpy array or torch tensor}. bfloat16 torch tensors are
    written as BF16. Writes to path + '.tmp' then renames (atomic on POSIX)."""
    entries = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if hasattr(t, "detach"):  # torch tensor
            import torch

            t = t.detach().cpu().contiguous()
            if t.dtype == torch.bfloat16:
                raw = t.view(torch.int16).numpy().tobytes()
                dtype = "BF16"
            else:
                arr = t.numpy()
                raw, dtype = arr.tobytes(), _DTYPES[arr.dtype]
            shape = list(t.shape)
        else:
            arr = np.ascontiguousarray(t)
            if arr.dtype not in _DTYPES:
                raise ValueError(f"tensor {name}: unsupported dtype {arr.dtype}")
            raw, dtype, shape = arr.astype(arr.dtype.newbyteorder("<")).tobytes(), _DTYPES[arr.dtype], list(arr.shape)
        entries.append((name, dtype, shape, raw, offset))
        offset += len(raw)
    header = {name: {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
              for name, dt, shape, raw, off in entries}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for _, _, _, raw, _ in entries:
            f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
