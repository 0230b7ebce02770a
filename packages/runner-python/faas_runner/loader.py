"""Turns a load spec into a callable handler: validate, write, import.

Inline code is written to a private temp directory as ``<module>.py``; code
from a code directory (a read-only ConfigMap mount) is imported in place. The
module is loaded from its exact file with importlib, never looked up on
``sys.path``, so a module called ``json`` or ``main`` cannot pick up or clobber
someone else's module.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import site
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FunctionType, ModuleType
from typing import Any

from .package import Package

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_HANDLER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_MODULES = {"faas", "faas_runner", "__main__"}
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_REGISTRY = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")
# The OCI distribution spec's repository name grammar.
_REPOSITORY = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")


class SpecError(Exception):
    """The load spec is malformed (→ 400 INVALID_SPEC)."""


class LoadError(Exception):
    """The code could not be imported or has no usable handler (→ 400 FUNCTION_LOAD_FAILED)."""


@dataclass(frozen=True)
class LoadSpec:
    name: str
    handler: str
    code: str | None
    timeout_seconds: float
    env: dict[str, str] = field(default_factory=dict)
    package: Package | None = None

    @property
    def module_name(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def function_name(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass(frozen=True)
class LoadedFunction:
    spec: LoadSpec
    call: Callable[..., Any]
    is_async: bool
    takes_request: bool
    fingerprint: str
    load_ms: float
    temp_dir: str | None


def parse_load_spec(raw: Any, code_dir: bool = False) -> LoadSpec:
    """Validates a load spec; ``code_dir``: neither code nor package means ``<module>.py`` beside it."""
    if not isinstance(raw, dict):
        raise SpecError("load spec must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError("name: must be lowercase letters, digits and '-', starting and ending with a letter or digit")
    runtime = raw.get("runtime", "python")
    if runtime != "python":
        raise SpecError(f'runtime: this runner runs "python", not {runtime!r}')
    handler = raw.get("handler", "main.handle")
    if not isinstance(handler, str) or not _HANDLER.fullmatch(handler):
        raise SpecError('handler: must be "<module>.<function>", e.g. "main.handle"')
    code = raw.get("code")
    if code is not None and (not isinstance(code, str) or not code.strip()):
        raise SpecError("code: must be a non-empty string of Python source")
    package = None
    if raw.get("package") is not None:
        if "code" in raw:
            raise SpecError("package: give either code or package, not both")
        package = parse_package(raw["package"])
    elif code is None and not code_dir:
        raise SpecError("code: required (or package)")
    timeout = raw.get("timeoutSeconds", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise SpecError("timeoutSeconds: must be a positive number")
    env = raw.get("env") or {}
    if not isinstance(env, dict):
        raise SpecError("env: must be an object of strings")
    for key, value in env.items():
        if not _ENV_NAME.fullmatch(key):
            raise SpecError(f"env.{key}: not a valid environment variable name")
        if not isinstance(value, str):
            raise SpecError(f"env.{key}: value must be a string")
    return LoadSpec(
        name=name, handler=handler, code=code, timeout_seconds=float(timeout), env=dict(env), package=package
    )


def parse_package(raw: Any) -> Package:
    """``package``: a digest, and a directory or a registry and repository to pull it from."""
    if not isinstance(raw, dict):
        raise SpecError("package: must be an object {digest, dir} or {digest, registry, repository}")
    digest = raw.get("digest")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise SpecError(f'package.digest: must be "sha256:" and 64 lowercase hex digits; got {json.dumps(digest)}')
    directory = raw.get("dir")
    if directory is not None and (not isinstance(directory, str) or not os.path.isabs(directory)):
        raise SpecError(f"package.dir: must be an absolute path; got {json.dumps(directory)}")
    registry = raw.get("registry")
    if registry is not None and (not isinstance(registry, str) or not _REGISTRY.fullmatch(registry)):
        raise SpecError(f'package.registry: must be "http(s)://host[:port]"; got {json.dumps(registry)}')
    repository = raw.get("repository")
    if repository is not None and (not isinstance(repository, str) or not _REPOSITORY.fullmatch(repository)):
        raise SpecError(
            f'package.repository: must be a repository name such as "default/hello"; got {json.dumps(repository)}'
        )
    if registry is not None and repository is None:
        raise SpecError("package.repository: required with package.registry")
    if repository is not None and registry is None:
        raise SpecError("package.registry: required with package.repository")
    if directory is None and registry is None:
        raise SpecError("package: needs dir, or registry and repository")
    return Package(digest=digest, dir=directory, registry=registry, repository=repository)


def read_code_dir(code_dir: str) -> LoadSpec:
    """The load spec in ``<code_dir>/function.json``; ``code`` may live beside it."""
    path = os.path.join(code_dir, "function.json")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except ValueError as err:
        raise SpecError(f"{path}: not valid JSON: {err}") from err
    return parse_load_spec(raw, code_dir=True)


def read_env_spec(spec_text: str, code: str | None) -> LoadSpec:
    """``function.json`` and its code file as given in FAAS_FUNCTION_SPEC and FAAS_FUNCTION_CODE."""
    try:
        raw = json.loads(spec_text)
    except ValueError as err:
        raise SpecError(f"FAAS_FUNCTION_SPEC: not valid JSON: {err}") from err
    if isinstance(raw, dict) and "code" not in raw and code is not None:
        raw = {**raw, "code": code}
    return parse_load_spec(raw)


def load_function(
    spec: LoadSpec,
    code_dir: str | None = None,
    scratch_dir: str | None = None,
    root: str | None = None,
    fresh_dir: str | None = None,
) -> LoadedFunction:
    """Imports the spec's module and finds its handler; restores the process on failure.

    Inline code goes to ``fresh_dir``, an empty directory made ahead of the
    load, or else to a new directory under ``scratch_dir`` (made at start-up,
    so the first specialization does not pay for probing the temp directory).
    A package's module is imported from its ``root`` (see ``package_root``).
    """
    start = _now_ms()
    temp_dir: str | None = None
    added: list[str] = []
    if spec.package is not None:
        if root is None:
            raise LoadError(f"{spec.package.describe()}: not pulled")
        path = os.path.join(root, f"{spec.module_name}.py")
        code = _read_module(path, f"{spec.package.describe()}: ")
        added = _add_package_paths(root)
    elif spec.code is not None:
        code = spec.code
        temp_dir = fresh_dir or tempfile.mkdtemp(prefix=f"{spec.name}-", dir=scratch_dir)
        path = os.path.join(temp_dir, f"{spec.module_name}.py")
        _write_new(path, code.encode())
    elif code_dir is not None:
        path = os.path.join(code_dir, f"{spec.module_name}.py")
        code = _read_module(path)
    else:
        raise SpecError("code: required")

    saved_env = {k: os.environ.get(k) for k in spec.env}
    os.environ.update(spec.env)
    # Sibling helper modules in a code dir are importable; appended, so they shadow nothing.
    added_path = spec.code is None and spec.package is None and code_dir is not None and code_dir not in sys.path
    if added_path:
        sys.path.append(code_dir)
    try:
        # Inline code is compiled from the string just written, not read back from the file.
        module = _import_file(_free_module_name(spec.module_name), path, code if spec.code is not None else None)
        call = getattr(module, spec.function_name, None)
        if call is None:
            raise LoadError(f"module {spec.module_name!r} has no attribute {spec.function_name!r}")
        if not callable(call):
            raise LoadError(f"{spec.handler} is a {type(call).__name__}, not a function")
    except BaseException:
        _restore_env(saved_env)
        if added_path:
            sys.path.remove(code_dir)
        for entry in added:
            if entry in sys.path:
                sys.path.remove(entry)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    fingerprint = _fingerprint(spec, code if spec.package is None else None)
    return LoadedFunction(
        spec=spec,
        call=call,
        is_async=_is_async(call),
        takes_request=_takes_argument(call),
        fingerprint=fingerprint,
        load_ms=round(_now_ms() - start, 3),
        temp_dir=temp_dir,
    )


def _add_package_paths(root: str) -> list[str]:
    """Puts the root first on ``sys.path`` and ``<root>/site-packages`` (with its ``.pth`` files) right after it."""
    before = set(sys.path)
    site_packages = os.path.join(root, "site-packages")
    if os.path.isdir(site_packages):
        # addsitedir appends the directory and what its .pth files name (running their import lines) ...
        site.addsitedir(site_packages)
        new = [p for p in sys.path if p not in before]
        # ... at the end: move them to just after the root.
        sys.path[:] = [root, *new, *(p for p in sys.path if p in before and p != root)]
        return [root, *new]
    sys.path.insert(0, root)
    return [root]


def fingerprint_of(spec: LoadSpec, code_dir: str | None) -> str | None:
    """The fingerprint a spec would load with, or None if its code is unreadable."""
    if spec.package is not None:
        return _fingerprint(spec, None)
    if spec.code is not None:
        return _fingerprint(spec, spec.code)
    if code_dir is None:
        return None
    try:
        with open(os.path.join(code_dir, f"{spec.module_name}.py"), encoding="utf-8") as f:
            return _fingerprint(spec, f.read())
    except OSError:
        return None


def _import_file(module_name: str, path: str, source: str | None = None) -> ModuleType:
    """Imports the module file at ``path``; ``source``: its text, already in hand (compiled as is)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before exec: dataclasses, pickle and typing look modules up by name.
    sys.modules[module_name] = module
    try:
        if source is None:
            spec.loader.exec_module(module)
        else:
            # What exec_module does, less reading the file back and looking for a cached .pyc.
            exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)
    except (Exception, SystemExit) as err:  # module code may call sys.exit()
        sys.modules.pop(module_name, None)
        raise LoadError(_describe_import_error(err)) from err
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _describe_import_error(err: BaseException) -> str:
    if isinstance(err, SyntaxError):
        where = f"line {err.lineno}" + (f", column {err.offset}" if err.offset else "")
        return f"SyntaxError: {err.msg} ({os.path.basename(err.filename or '')} {where})"
    return f"{type(err).__name__} while importing: {err}"


def _free_module_name(name: str) -> str:
    if name in sys.modules or name in sys.stdlib_module_names or name in _RESERVED_MODULES:
        return f"faas_function_{name}"
    return name


def _restore_env(saved: Mapping[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _is_async(call: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(getattr(call, "__call__", None))


def _takes_argument(call: Callable[..., Any]) -> bool:
    if type(call) is FunctionType and not hasattr(call, "__wrapped__") and not hasattr(call, "__signature__"):
        # A plain function: its code object says it, without building a Signature (~0.1 ms on a cold start).
        code = call.__code__
        return code.co_argcount > 0 or bool(code.co_flags & inspect.CO_VARARGS)
    try:
        params = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def _fingerprint(spec: LoadSpec, code: str | None) -> str:
    pkg = spec.package
    package = None if pkg is None else [pkg.digest, pkg.dir, pkg.registry, pkg.repository]
    material = json.dumps([spec.name, spec.handler, code, spec.timeout_seconds, spec.env, package], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _write_new(path: str, data: bytes) -> None:
    """Creates ``path`` (it must not exist) with ``data``; plain os calls, cheaper than a text file object."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _now_ms() -> float:
    return time.perf_counter() * 1000


def _read_module(path: str, prefix: str = "") -> str:
    """The source of a module file; a file that cannot be read is a load error naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as err:
        raise LoadError(f"{prefix}cannot read {path}: {err.strerror}") from err
