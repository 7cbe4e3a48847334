"""Reading files from strangers and writing files that survive a crash.

Reading: nothing in a file we read can run code. Tensor files load with
``torch.load(weights_only=True)``, which rebuilds only tensors and plain containers; third-party
pickles (RefCOCO's ``refs(*).p``) go through :func:`load_plain_pickle`, which admits only plain
containers, strings and numbers; every JSONL file (phrases, cues, detections, a generated set's
index) is read by :func:`jsonl_objects`, line by line with a bounded line length. A file that is
malformed, or holds anything else, raises :class:`FileFormatError` (or the reader's own ValueError)
naming the file, the line where there are lines (and the refused class).

Writing: :func:`atomic_write` writes to a temporary file beside the target, fsyncs it, renames it
over the target and fsyncs the directory, so the target is always either the old or the new file,
also after a power cut. Temporary names are unique per writer (two processes writing the same
target never touch each other's temporary file) and carry the writer's host and pid, so the temp
file of a writer that was killed is recognised and removed by the next write or start
(:func:`remove_stale_temp_files`).
"""
from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import secrets
import socket
import warnings
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Tuple, Type

import torch


class FileFormatError(ValueError):
    """A file we read is malformed, or holds something we refuse to load; the message names the file."""


# ------------------------------------------------------------------------------------------ reading
def torch_load_safely(path: str, what: str, **kwargs) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; ``what`` names the file's role in errors
    ("synthetic cache"). Raises :class:`FileFormatError` for a file that is corrupt or holds
    anything but tensors and plain containers (naming the refused class)."""
    try:
        with warnings.catch_warnings():  # torch's advice to file an issue about a stranger's pickle protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except pickle.UnpicklingError as err:  # weights_only refused something, or the pickle is broken
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        if refused:
            raise FileFormatError(
                f"{what} {path} was refused: it holds a pickled '{refused.group(1)}', and only tensors and "
                f"plain containers are loaded (unpickling anything else can run code from the file)") from None
        reason = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
        detail = reason.group(1) if reason else str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FileFormatError(f"{what} {path} is corrupt or unreadable ({detail})") from None
    except Exception as err:  # noqa: BLE001 - every other failure of a hostile file is the same verdict
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise FileFormatError(f"{what} {path} is corrupt or unreadable ({type(err).__name__}: {first_line})") from None


# classes a plain pickle may call: protocol-2 pickles (Python 2's cPickle among them) build sets,
# frozensets and complex numbers through them; each one builds a value and runs nothing else
_PLAIN_GLOBALS = {(module, name) for module in ("builtins", "__builtin__")
                  for name in ("set", "frozenset", "complex")} | {("collections", "OrderedDict")}


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str):
        super().__init__(file, encoding="latin1")  # Python 2 byte strings decode as latin-1, as the refer toolkit does
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _PLAIN_GLOBALS:
            raise FileFormatError(
                f"{self.path} was refused: it holds a pickled '{module}.{name}', and only plain containers, "
                f"strings and numbers are loaded (unpickling anything else can run code from the file)")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise FileFormatError(f"{self.path} was refused: it holds a persistent reference, which plain data never has")


def load_plain_pickle(path: str) -> Any:
    """Unpickle ``path`` admitting only plain containers (list, tuple, dict, set), strings and
    numbers; anything else raises :class:`FileFormatError` naming the class, before it is built."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _PlainUnpickler(io.BytesIO(data), path).load()
    except FileFormatError:
        raise
    except RecursionError:
        raise FileFormatError(f"{path} is not a readable pickle (nested too deeply)") from None
    except Exception as err:  # noqa: BLE001 - a truncated or garbled pickle fails in many ways
        raise FileFormatError(f"{path} is not a readable pickle ({type(err).__name__}: {err})") from None


def path_inside(base: str, relative: str, what: str) -> str:
    """``base/relative``, refused with :class:`FileFormatError` naming ``what`` (which should name the
    id and the file it came from) when ``relative`` is absolute, holds a NUL, or leads out of ``base``."""
    if not isinstance(relative, str) or not relative or "\x00" in relative or os.path.isabs(relative):
        raise FileFormatError(f"{what}: {relative!r} is not a relative path inside {base}")
    joined = os.path.normpath(os.path.join(base, relative))
    if os.path.relpath(joined, os.path.normpath(base)).split(os.sep)[0] == os.pardir:
        raise FileFormatError(f"{what}: {relative!r} leads outside {base}")
    return joined


MAX_JSONL_LINE_CHARS = 1 << 20  # one record per line; a longer line is refused before it is parsed


def jsonl_objects(path: str, what: str, error: Type[Exception] = FileFormatError,
                  max_line_chars: int = MAX_JSONL_LINE_CHARS) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """(line number, object) for each non-blank line of a UTF-8 JSONL file, parsed by ``json.loads``
    (no code runs from the file). A missing file raises FileNotFoundError, a line that is too long,
    not UTF-8, not JSON or not a JSON object raises ``error`` as "<what> <path> line <n>: <reason>";
    the caller checks the object's keys and raises the same way through :func:`jsonl_error`."""
    try:
        f = open(path, "rb")  # lines are decoded one by one, so a bad byte is blamed on its own line
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    with f:
        number = 0
        while True:
            number += 1
            raw = f.readline(4 * max_line_chars + 1)  # bounded (UTF-8: at most 4 bytes a character)
            if not raw:
                return
            try:
                line = raw.decode("utf-8") if len(raw) <= 4 * max_line_chars else None
            except UnicodeDecodeError:
                raise jsonl_error(error, what, path, number, "not UTF-8 text") from None
            if line is None or len(line) > max_line_chars:
                raise jsonl_error(error, what, path, number, f"line longer than {max_line_chars} characters")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise jsonl_error(error, what, path, number,
                                  f"not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise jsonl_error(error, what, path, number, f"expected a JSON object, got {type(record).__name__}")
            yield number, record


def jsonl_error(error: Type[Exception], what: str, path: str, number: int, reason: str) -> Exception:
    """The error for line ``number`` of a JSONL file, in :func:`jsonl_objects`' words."""
    return error(f"{what} {path} line {number}: {reason}")


# ------------------------------------------------------------------------------------------ writing
_TEMP_MARK = "~tmp~"


def _temp_name(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}{_TEMP_MARK}{os.getpid()}~{secrets.token_hex(4)}~{socket.gethostname()}")


def _writer_is_dead(pid: int, host: str) -> bool:
    if os.name != "posix" or host != socket.gethostname():
        return False  # another machine's writer (a shared filesystem): we cannot tell, keep its file
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_stale_temp_files(path: str) -> List[str]:
    """Remove the temporary files that writers of ``path`` killed mid-write left beside it (those of
    live writers stay); returns the removed paths."""
    directory, name = os.path.split(os.path.abspath(path))
    prefix = f".{name}{_TEMP_MARK}"
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        pid, _token, host = (entry[len(prefix):].split("~", 2) + ["", ""])[:3]
        if pid.isdigit() and _writer_is_dead(int(pid), host):
            try:
                os.unlink(os.path.join(directory, entry))
                removed.append(os.path.join(directory, entry))
            except FileNotFoundError:
                pass
    return removed


def fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be fsync'ed)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a fresh temporary file beside ``path``, then fsync it, rename it over
    ``path`` and fsync the directory. On any failure the temporary file is removed and ``path`` is
    untouched. Stale temporary files of killed writers of ``path`` are removed first."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temp_files(path)
    tmp = _temp_name(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_directory(directory)
