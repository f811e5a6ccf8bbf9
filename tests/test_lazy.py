"""Tests of fastattr._lazy: public names resolve on first use and unknown names fail clearly."""

from __future__ import annotations

import json

import pytest

from fastattr._lazy import lazy_exports


def test_names_resolve_relative_absolute_and_renamed():
    namespace: dict = {}
    getattr_, dir_ = lazy_exports(
        "fastattr", {"InputError": ".errors", "dumps": "json", "loads_json": "json:loads"},
        ["InputError", "dumps", "loads_json"], namespace)
    from fastattr.errors import InputError

    assert getattr_("InputError") is InputError
    assert getattr_("dumps") is json.dumps
    assert getattr_("loads_json")("[1]") == [1]
    assert namespace["InputError"] is InputError  # cached for the next access
    assert dir_() == ["InputError", "dumps", "loads_json"]


def test_unknown_name_is_an_attribute_error():
    getattr_, _ = lazy_exports("fastattr.somewhere", {}, [], {})
    with pytest.raises(AttributeError, match="'fastattr.somewhere' has no attribute 'nope'"):
        getattr_("nope")
