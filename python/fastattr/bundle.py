"""The bundle folder: manifest, checksums and path safety (DESIGN.md §6).

A bundle is a directory holding ``manifest.json`` and the files it names by role::

    manifest.json      format "fastattr-bundle", version "MAJOR.MINOR", dim, n_items,
                       preprocessing, files {name: {sha256, bytes}}, roles {role: name},
                       provenance, evaluation, export (parity figures)
    embedder.onnx      the embedder (role "embedder"); optional "embedder_fp16", "embedder_int8"
    tokenizer.json     role "tokenizer"
    index.fai          role "index" (fastattr.index)
    items.jsonl        role "items": {"item_id", "caption", "uri", "attributes"} per line, index order
    thumbnails.npy     optional role "thumbnails": uint8 (N, h, w, 3), row i = line i of items.jsonl

Opening refuses an unknown format or major version, a missing or altered file and any name
that leaves the folder (absolute, ``..``, or a symlink pointing outside).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._atomic import recover, write_json
from .errors import BundleError, InputError
from .preprocess import PreprocessSpec

__all__ = [
    "FORMAT",
    "VERSION",
    "MANIFEST",
    "Bundle",
    "Items",
    "open_bundle",
    "sha256_file",
    "write_manifest",
    "safe_path",
]

FORMAT = "fastattr-bundle"
VERSION = (1, 0)
MANIFEST = "manifest.json"
REQUIRED_ROLES = ("embedder", "tokenizer", "index", "items")
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"")
        >>> sha256_file(p)[:8]
        'e3b0c442'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_path(root: Path, name: str) -> Path:
    """Resolve ``name`` inside bundle folder ``root``; BundleError if it would leave it.

    Example:
        >>> safe_path(Path("/tmp"), "../etc/passwd")
        Traceback (most recent call last):
        ...
        fastattr.errors.BundleError: bundle /tmp names file '../etc/passwd', which leaves the bundle folder; the manifest cannot be trusted
    """
    bad = (
        not isinstance(name, str)
        or not name
        or "\\" in name
        or "\x00" in name
        or os.path.isabs(name)
        or any(part in ("..", "") for part in name.split("/"))
    )
    if not bad:
        resolved = (root / name).resolve()
        bad = root.resolve() not in resolved.parents
    if bad:
        raise BundleError(f"bundle {root} names file {name!r}, which leaves the bundle folder; the manifest cannot be trusted")
    return root / name


def _parse_version(value: Any, root: Path) -> tuple[int, int]:
    try:
        major, minor = (int(v) for v in str(value).split("."))
    except ValueError as exc:
        raise BundleError(f"{root / MANIFEST}: version {value!r} is not 'MAJOR.MINOR'") from exc
    if major != VERSION[0]:
        raise BundleError(
            f"{root / MANIFEST}: bundle format version {major}.{minor} is not supported by this fastattr "
            f"(reads {VERSION[0]}.x); rebuild the bundle with `fastattr bundle build` or upgrade fastattr"
        )
    return major, minor


@dataclass(frozen=True)
class Items:
    """Training-item metadata in index order, with a lookup from item id to row.

    Example:
        >>> items = Items(ids=[5], captions=["a"], uris=[None], attributes=[{}])
        >>> items.row(5)
        0
    """

    ids: list[int]
    captions: list[str]
    uris: list[str | None]
    attributes: list[dict[str, Any]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rows", {item_id: row for row, item_id in enumerate(self.ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        try:
            return int(item_id) in self._rows  # type: ignore[attr-defined, call-overload]
        except (TypeError, ValueError):
            return False

    def row(self, item_id: int) -> int:
        """The row of ``item_id``; InputError when the bundle has no such item."""
        try:
            return self._rows[int(item_id)]  # type: ignore[attr-defined]
        except KeyError:
            raise InputError(f"item id {item_id} is not in this bundle") from None

    @classmethod
    def read(cls, path: Path) -> "Items":
        """Parse items.jsonl; BundleError on a malformed line."""
        ids: list[int] = []
        captions: list[str] = []
        uris: list[str | None] = []
        attributes: list[dict[str, Any]] = []
        with open(path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    ids.append(int(obj["item_id"]))
                    captions.append(str(obj.get("caption", "")))
                    uri = obj.get("uri")
                    uris.append(None if uri is None else str(uri))
                    attributes.append(dict(obj.get("attributes") or {}))
                except (ValueError, KeyError, TypeError) as exc:
                    raise BundleError(f"{path}:{line_no}: malformed item line ({exc!r})") from exc
        return cls(ids, captions, uris, attributes)


def _bounded_int(manifest: Mapping[str, Any], key: str, lo: int, hi: int, root: Path) -> int:
    value = manifest.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BundleError(f"{root / MANIFEST}: {key!r} must be an integer in {lo}..{hi}, got {value!r:.60}")
    return value


class Bundle:
    """An opened, verified bundle folder.

    Example:
        >>> bundle = open_bundle("bundles/shapes")  # doctest: +SKIP
        >>> bundle.file("embedder").name  # doctest: +SKIP
        'embedder.onnx'
    """

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest
        self.version: tuple[int, int] = _parse_version(manifest.get("version"), root)
        self.dim = _bounded_int(manifest, "dim", 1, 16384, root)
        self.n_items = _bounded_int(manifest, "n_items", 0, 2**32 - 1, root)
        preprocessing = manifest.get("preprocessing")
        if not isinstance(preprocessing, dict):
            raise BundleError(f"{root / MANIFEST}: 'preprocessing' must be an object, got {preprocessing!r:.60}")
        try:
            self.spec = PreprocessSpec.from_dict(preprocessing)
        except InputError as exc:
            raise BundleError(f"{root / MANIFEST}: {exc}") from None

    def has(self, role: str) -> bool:
        """Whether the bundle holds a file for ``role``."""
        return role in self.manifest.get("roles", {})

    def file(self, role: str) -> Path:
        """The path of the file that plays ``role``; BundleError if the bundle has none."""
        roles = self.manifest.get("roles", {})
        if role not in roles:
            raise BundleError(f"bundle {self.root} has no {role!r} file (roles: {sorted(roles)})")
        return safe_path(self.root, roles[role])

    def items(self) -> Items:
        """Item metadata (id, caption, uri, attributes) in index order."""
        items = Items.read(self.file("items"))
        if len(items) != self.n_items:
            raise BundleError(f"{self.file('items')} has {len(items)} items, the manifest says {self.n_items}")
        return items


def _read_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise BundleError(f"no bundle folder at {str(root)!r}; build one with `fastattr bundle build`")
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root} has no {MANIFEST}: not a bundle, or an interrupted build. Rebuild it with `fastattr bundle build`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); rebuild the bundle") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{path}: format is {found!r}, expected {FORMAT!r}")
    for key in ("version", "dim", "n_items", "preprocessing", "files", "roles"):
        if key not in manifest:
            raise BundleError(f"{path} lacks the {key!r} field; rebuild the bundle")
    return manifest


def open_bundle(path: str | os.PathLike[str], *, verify: str = "full") -> Bundle:
    """Open and verify a bundle folder.

    Args:
        path: the bundle folder.
        verify: "full" checks every file's size and SHA-256; "sizes" checks sizes only
            (fast for large indexes, still catches truncation).

    Raises:
        BundleError: unknown format or major version, missing/altered file, unsafe path.

    Example:
        >>> open_bundle("bundles/shapes", verify="sizes").n_items  # doctest: +SKIP
        1000
    """
    if verify not in ("full", "sizes"):
        raise InputError(f"verify must be 'full' or 'sizes', got {verify!r}")
    root = Path(path)
    recover(root)   # a replacement cut off between its two renames (no atomic exchange here)
    manifest = _read_manifest(root)
    _parse_version(manifest["version"], root)
    files = manifest["files"]
    if not isinstance(files, dict):
        raise BundleError(f"{root / MANIFEST}: 'files' must map names to {{sha256, bytes}}")
    roles = manifest.get("roles")
    if not isinstance(roles, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in roles.items()):
        raise BundleError(f"{root / MANIFEST}: 'roles' must map role names to file names, got {roles!r:.80}")
    for role in REQUIRED_ROLES:
        if role not in manifest["roles"]:
            raise BundleError(f"{root / MANIFEST} names no {role!r} file; rebuild the bundle")
    for role, name in manifest["roles"].items():
        if name not in files:
            raise BundleError(f"{root / MANIFEST}: the {role!r} file {name!r} has no checksum entry")
    for name, entry in files.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or isinstance(entry.get("bytes"), bool):
            raise BundleError(f"{root / MANIFEST}: the entry of {name!r} must be {{\"sha256\": str, \"bytes\": int}}, "
                              f"got {entry!r:.80}")
        file_path = safe_path(root, name)
        if not file_path.is_file():
            raise BundleError(f"bundle {root} is missing {name!r}; rebuild it with `fastattr bundle build`")
        size = file_path.stat().st_size
        if size != entry["bytes"]:
            raise BundleError(f"{file_path} has {size} bytes, the manifest says {entry.get('bytes')}: the file was altered or truncated")
        if verify == "full" and sha256_file(file_path) != entry.get("sha256"):
            raise BundleError(f"{file_path} does not match its SHA-256 in the manifest: the file was altered; rebuild the bundle")
    return Bundle(root, manifest)


def write_manifest(
    root: str | os.PathLike[str],
    *,
    roles: Mapping[str, str],
    dim: int,
    n_items: int,
    spec: PreprocessSpec,
    extra_files: Iterable[str] = (),
    **sections: Any,
) -> dict[str, Any]:
    """Hash the files named by ``roles`` (and ``extra_files``) in ``root`` and write manifest.json.

    Call it last, inside the temporary folder of an atomic build.

    Example:
        >>> write_manifest(tmp, roles={...}, dim=64, n_items=10, spec=spec, provenance={})  # doctest: +SKIP
    """
    root = Path(root)
    names = sorted(set(roles.values()) | set(extra_files))
    files = {}
    for name in names:
        file_path = safe_path(root, name)
        files[name] = {"sha256": sha256_file(file_path), "bytes": file_path.stat().st_size}
    manifest = {
        "format": FORMAT,
        "version": f"{VERSION[0]}.{VERSION[1]}",
        "dim": int(dim),
        "n_items": int(n_items),
        "preprocessing": spec.to_dict(),
        "roles": dict(roles),
        "files": files,
        **sections,
    }
    write_json(root / MANIFEST, manifest)
    return manifest
