"""Hostile files for the loader tests: pickles whose unpickling would create a file."""
import io
import os
import pickle
import zipfile

import torch


class CreatesFile:
    """Unpickling this calls ``open(marker, "w")``: the file appearing means code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def planted_pickle(marker, wrapped_in=lambda payload: payload, protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    """Plain pickle bytes of ``wrapped_in(CreatesFile(marker))``."""
    return pickle.dumps(wrapped_in(CreatesFile(marker)), protocol=protocol)


def planted_torch_file(marker, wrapped_in=lambda payload: payload) -> bytes:
    """``torch.save`` (zip format) bytes of ``wrapped_in(CreatesFile(marker))``."""
    buf = io.BytesIO()
    torch.save(wrapped_in(CreatesFile(marker)), buf)
    return buf.getvalue()


def unpickling_runs_code(data: bytes, marker) -> bool:
    """Positive control: plain ``pickle.loads`` of ``data`` does create ``marker`` (so a test asserting
    that a loader does not create it can fail)."""
    if data[:2] == b"PK":  # torch's zip format: the pickle is the archive's data.pkl
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))

        class _Tensors(pickle.Unpickler):
            def persistent_load(self, pid):
                return None

        _Tensors(io.BytesIO(data)).load()
    else:
        pickle.loads(data)
    created = os.path.exists(str(marker))
    if created:
        os.unlink(str(marker))
    return created
