"""Atomic file and folder writes, and the one output-path guard every writing command uses.

No output is ever left half-written, and no command replaces a path it did not write itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

#: Written into every output folder a command creates; names the command (JSON).
OUTPUT_MARKER = ".kidney-tf-output.json"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` only if the block succeeds.

    Usage::

        with atomic_path("report/metrics.json") as tmp:
            tmp.write_text("{}")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or target.suffix or ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_json_atomic(target: str | os.PathLike, data: Any, *, indent: int = 2) -> Path:
    """Write ``data`` as JSON to ``target`` atomically and return the path."""
    return write_text_atomic(
        target, json.dumps(data, indent=indent, sort_keys=False, default=_jsonable) + "\n"
    )


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it onto ``target`` on success.

    Refuses to replace an existing ``target`` unless ``overwrite`` is true.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target}: already exists (pass overwrite=True / --overwrite to replace it)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; e.g. a model server must read it
    try:
        yield tmp
        if target.exists():
            backup = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
            backup.rmdir()
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------ the output guard


def check_output_dir(
    path: str | os.PathLike,
    command: str,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    replace: bool = False,
    overwrite: bool = False,
    markers: Iterable[str] = (),
) -> Path:
    """Refuse an output folder that would destroy or pollute a user's files; return it.

    ``command`` (e.g. ``"data crop"``) owns folders whose :data:`OUTPUT_MARKER` names it, or that
    hold all of ``markers`` (files older versions wrote, e.g. ``"crop_boxes.csv"``). Refused, with
    a one-line error naming the path: a folder that is an input, lies inside an input folder or
    (``replace``) holds an input; a file in its place; a non-empty folder the command does not own
    (even with ``overwrite``). A folder the command replaces whole (``replace=True``) needs
    ``overwrite`` when it holds an earlier output; one it writes into is simply reused.

    Usage: ``out = check_output_dir(args.dst, "data crop", inputs=[args.src], replace=True)``.
    """
    out = Path(path)
    _check_not_input(out, inputs, contains=replace)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: a file is there, not an output folder; choose another path")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{out}: cannot create the folder ({parent} is a file)")
            break
    if not out.is_dir():
        return out
    entries = [p for p in out.iterdir() if replace or not p.name.startswith(".")]
    owner = output_owner(out, markers=markers, command=command)
    if not entries and owner is None:
        return out
    if owner is None:
        raise FileExistsError(
            f"{out}: folder is not empty and is not an earlier 'kidney-tf {command}' output "
            f"(no {OUTPUT_MARKER}); choose a new or empty folder"
        )
    if owner != command:
        raise FileExistsError(
            f"{out}: holds a 'kidney-tf {owner}' output, not a '{command}' one; "
            "choose a new or empty folder"
        )
    if replace and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass --overwrite to replace it)")
    return out


def output_owner(
    folder: str | os.PathLike, *, markers: Iterable[str] = (), command: str | None = None
) -> str | None:
    """The command that wrote ``folder`` (its :data:`OUTPUT_MARKER`), ``command`` when all of
    ``markers`` exist there, else None."""
    folder = Path(folder)
    try:
        owner = json.loads((folder / OUTPUT_MARKER).read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        owner = None
    if isinstance(owner, str):
        return owner
    markers = tuple(markers)
    if command is not None and markers and all((folder / name).exists() for name in markers):
        return command
    return None


def mark_output_dir(folder: str | os.PathLike, command: str) -> Path:
    """Create ``folder`` and record that ``command`` wrote it (see :func:`check_output_dir`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if output_owner(folder) != command:
        write_json_atomic(folder / OUTPUT_MARKER, {"command": command})
    return folder


def check_output_file(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    is_own: Callable[[Path], bool] | None = None,
    what: str = "output file",
) -> Path:
    """Refuse an output file that is an input or lies in an input folder, a folder in its place,
    or an existing file ``is_own`` does not recognise as this command's earlier output.

    Usage: ``check_output_file(args.json, inputs=[args.root], is_own=is_verify_report)``.
    """
    out = Path(path)
    _check_not_input(out, inputs, contains=False)
    if out.is_dir():
        raise IsADirectoryError(
            f"{out}: is a folder; give a file name for the {what} (e.g. {out / 'report.json'})"
        )
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{out}: cannot write the {what} ({parent} is a file)")
            break
    if out.exists() and not (is_own is not None and is_own(out)):
        raise FileExistsError(
            f"{out}: exists and is not an earlier {what} of this command; "
            "choose a new file name (it is never replaced)"
        )
    return out


def input_tree(path: str | os.PathLike | None) -> Path | None:
    """The folder an input's data lives in: a folder itself, the folder of a manifest CSV."""
    if path is None:
        return None
    path = Path(path)
    return path.parent if path.suffix.lower() == ".csv" and not path.is_dir() else path


def _check_not_input(out: Path, inputs: Iterable[str | os.PathLike | None], *, contains: bool):
    target = out.resolve()
    for item in inputs:
        if item is None or item == "":
            continue
        source = Path(item).resolve()
        if target == source:
            raise ValueError(f"{out}: is an input of this command ({item}); choose another output")
        if source.is_dir() and target.is_relative_to(source):
            raise ValueError(
                f"{out}: lies inside the input folder {item}; write outputs outside it"
            )
        if contains and source.is_relative_to(target):
            raise ValueError(f"{out}: holds the input {item}, which it would replace")


def remove_stale_temp_dirs(target: str | os.PathLike) -> list[Path]:
    """Delete temp folders an earlier, killed write of ``target`` left beside it; return them.

    Only folders this module named for ``target`` whose process (same host) is gone are removed.
    """
    target = Path(target)
    pattern = re.compile(
        rf"^\.{re.escape(target.name)}\.tmp\.(?P<host>[^.]+)\.(?P<pid>\d+)\.[^.]+$"
    )
    removed = []
    if not target.parent.is_dir():
        return removed
    for path in target.parent.iterdir():
        match = pattern.match(path.name)
        if not match or not path.is_dir() or match["host"] != _host():
            continue
        if not _alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.tmp.{_host()}.{os.getpid()}."


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written there; fail fast otherwise.

    Raises ``PermissionError``/``OSError`` with a message naming the folder.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe.") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
    except OSError as exc:
        raise OSError(
            exc.errno, f"{path}: output folder is not writable ({exc.strerror or exc})"
        ) from exc
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for NumPy scalars/arrays and paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
