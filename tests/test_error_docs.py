"""docs/errors.md has one ``## `` heading per stable error code, and no other headings.

The codes are the ``code`` of every :class:`SettleError` subclass in ``settle`` (after importing
every module, so a new package is covered without touching this test) and every transfer
:class:`ResultCode`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import settle
import settle.ledger
import settle.ledger.errors
import settle.money
from settle.errors import SettleError
from settle.ledger.errors import ResultCode

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
# Alembic's env.py runs migrations when imported; migrations define no errors.
SKIPPED_PACKAGES = ("settle.store.migrations",)
# Bases that are never raised themselves, so clients never see their codes.
ABSTRACT_CODES = frozenset(
    {
        "settle_error",
        "ledger_error",
        "security_error",
        "api_error",
        "webhook_error",
        "payments_error",
    }
)


def _skipped(name: str) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in SKIPPED_PACKAGES)


@cache
def _settle_modules() -> tuple[str, ...]:
    """Import every module of ``settle`` except the migrations, and return their names.

    ``pkgutil.walk_packages`` only descends into directories that have an ``__init__.py``, and
    some of ours are namespace packages (no ``__init__.py``), so each package directory is listed
    with ``pkgutil.iter_modules`` instead.
    """
    names: list[str] = []
    for root in map(Path, settle.__path__):
        directories = [root, *(d for d in root.rglob("*") if d.is_dir())]
        for directory in sorted(directories):
            parts = directory.relative_to(root).parts
            if not all(part.isidentifier() for part in parts) or "__pycache__" in parts:
                continue
            package = ".".join(("settle", *parts))
            if _skipped(package):
                continue
            for info in pkgutil.iter_modules([str(directory)], f"{package}."):
                if not info.ispkg:
                    names.append(info.name)
    for name in names:
        importlib.import_module(name)
    return tuple(names)


def _subclasses(cls: type[SettleError]) -> Iterator[type[SettleError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _error_classes() -> list[type[SettleError]]:
    _settle_modules()
    # Only our own classes: a test may define a SettleError subclass of its own.
    return [c for c in _subclasses(SettleError) if c.__module__.split(".")[0] == "settle"]


def _documented_codes() -> list[str]:
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    return [line.removeprefix("## ").strip() for line in lines if line.startswith("## ")]


def test_the_walk_imports_every_settle_module() -> None:
    modules = set(_settle_modules())
    assert {
        "settle.errors",
        "settle.money.currency",
        "settle.money.money",
        "settle.ledger.apply",
        "settle.ledger.errors",
        "settle.store.db",
    } <= modules
    assert not [m for m in modules if _skipped(m)]


def test_every_error_class_declares_its_own_code() -> None:
    inherited = [c.__qualname__ for c in _error_classes() if "code" not in vars(c)]
    assert inherited == []


def test_error_docs_have_a_heading_for_every_code_and_no_other() -> None:
    exception_codes = {c.code for c in _error_classes()} - ABSTRACT_CODES
    codes = exception_codes | {r.value for r in ResultCode}
    documented = set(_documented_codes())
    missing = sorted(codes - documented)
    extra = sorted(documented - codes)
    assert (missing, extra) == ([], []), (
        f"codes without a heading in docs/errors.md: {missing}; headings that are no code: {extra}"
    )


def test_error_docs_have_no_duplicate_heading() -> None:
    counts = Counter(_documented_codes())
    assert sorted(code for code, n in counts.items() if n > 1) == []
