"""Every name in ``__all__`` exists, and every public model is exported (cf. httpx)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from pydantic import BaseModel

import schemas
import schemas.rest

PACKAGES = [schemas, schemas.rest]
# Owned by another engineer: exported from their own modules.
NOT_REEXPORTED = {"schemas.rest.auth", "schemas.rest.users", "schemas.export"}


def _modules(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.ispkg or info.name in NOT_REEXPORTED:
            continue
        yield importlib.import_module(info.name)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_names_exist(package):
    for name in package.__all__:
        assert hasattr(package, name), f"{package.__name__}.__all__ lists missing {name}"
    assert len(set(package.__all__)) == len(package.__all__)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_public_models_are_exported(package):
    for module in _modules(package):
        for name, value in vars(module).items():
            if name.startswith("_") or not inspect.isclass(value):
                continue
            if not issubclass(value, BaseModel) or value.__module__ != module.__name__:
                continue
            assert name in package.__all__, f"{module.__name__}.{name} not in {package.__name__}"
            assert name in module.__all__, f"{name} not in {module.__name__}.__all__"


def test_module_all_names_exist():
    for package in PACKAGES:
        for module in _modules(package):
            for name in getattr(module, "__all__", ()):
                assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name}"


def test_every_field_is_described():
    for package in PACKAGES:
        for name in package.__all__:
            value = getattr(package, name)
            if not (inspect.isclass(value) and issubclass(value, BaseModel)):
                continue
            for field_name, field in value.model_fields.items():
                assert field.description, f"{name}.{field_name} has no description"
