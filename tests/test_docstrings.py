"""Every public name of moepy's user-facing modules, and every public method and property of their classes,
has a docstring (users read them with help() in notebooks)."""
import inspect

import pytest

import moepy
import moepy.analysis
import moepy.configs
import moepy.families
import moepy.moe
import moepy.moe.quant
import moepy.routing

MODULES = (moepy, moepy.configs, moepy.routing, moepy.moe, moepy.moe.quant, moepy.families, moepy.analysis)


def _public(mod):
    names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
    for n in names:
        obj = getattr(mod, n)
        if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
            continue
        if getattr(obj, "__module__", "").split(".")[0] not in ("moepy",):
            continue
        yield f"{mod.__name__}.{n}", obj


def _undocumented():
    missing = set()
    for mod in MODULES:
        for name, obj in _public(mod):
            if not (obj.__doc__ or "").strip():
                missing.add(name)
            if inspect.isclass(obj):
                for m, v in vars(obj).items():
                    if m.startswith("_"):
                        continue
                    f = v.fget if isinstance(v, property) else getattr(v, "__func__", v)
                    if (isinstance(v, property) or inspect.isfunction(f)) and not (f.__doc__ or "").strip():
                        missing.add(f"{name}.{m}")
    return sorted(missing)


def test_public_names_have_docstrings():
    missing = _undocumented()
    assert not missing, f"{len(missing)} public names lack a docstring: {missing}"


@pytest.mark.parametrize("family", moepy.families.names())
def test_family_modules_document_themselves(family):
    import importlib
    fam = moepy.families.get(family)
    mod = next(m for n, m in __import__("sys").modules.items()
               if n.startswith("moepy.families.") and getattr(m, "FAMILY", None) is fam)
    assert (mod.__doc__ or "").strip() and (fam.router.__doc__ or "").strip()
    assert importlib.import_module(mod.__name__) is mod
