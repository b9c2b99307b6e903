"""Stack registry: validation, lookup, password checks and the YAML round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stackwatch.registry import StackInfo, StackRegistry, hash_password


def _stack(**kw: object) -> StackInfo:
    base: dict[str, object] = {
        "stack_id": "smx-cement-mill-1",
        "mn": "41120001CM0001",
        "password": "123456",
        "sector": "cement",
        "process": "cement_mill",
    }
    base.update(kw)
    return StackInfo.model_validate(base)


def test_sha256_entries_are_refused_with_how_to_rehash() -> None:
    with pytest.raises(ValidationError, match="stackwatch registry hash-password"):
        # sha256("123456"), the old format: refused, never silently ignored
        _stack(password=None, password_sha256="8d969eef6ecad3c29a3a629280e686cf"
               "0c3f5d5a86aff3ca12020c923adc6c92")


def test_clear_password_matches_only_itself() -> None:
    stack = _stack()
    assert stack.password_matches("123456")
    assert not stack.password_matches("654321")
    assert not stack.password_matches(None)


def test_hashed_password_matches() -> None:
    stack = _stack(password=None, password_hash=hash_password("s3cret", n=16))
    assert stack.password_matches("s3cret")
    assert not stack.password_matches("123456")


def test_unknown_sector_and_process_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown sector"):
        _stack(sector="bakery")
    with pytest.raises(ValidationError, match="unknown process"):
        _stack(process="sinter")


def test_duplicate_mn_rejected() -> None:
    a = _stack()
    b = _stack(stack_id="other")
    with pytest.raises(ValidationError, match="duplicate mn"):
        StackRegistry(stacks=[a, b])


def test_lookup_by_mn_and_id() -> None:
    reg = StackRegistry(stacks=[_stack(), _stack(stack_id="s2", mn="MN2")])
    found = reg.by_mn("MN2")
    assert found is not None and found.stack_id == "s2"
    assert reg.by_mn("nope") is None
    assert reg.by_mn(None) is None
    extended = reg.with_stacks([_stack(stack_id="s3", mn="MN3")])
    assert extended.by_mn("MN3") is not None
    assert reg.by_mn("MN3") is None


def test_yaml_round_trip_hashes_clear_passwords(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    StackRegistry(stacks=[_stack()]).dump(path)
    text = path.read_text()
    assert "123456" not in text and "password_hash: scrypt$16384$8$1$" in text
    loaded = StackRegistry.load(path)
    stack = loaded.by_mn("41120001CM0001")
    assert stack is not None
    assert stack.password_matches("123456")
    assert not stack.password_matches("000000")


def test_a_registry_inferred_from_a_capture_is_hashed_cheaply(tmp_path: Path) -> None:
    """Its passwords are in the capture anyway: 2**10 instead of 2**14, still salted scrypt."""
    registry = StackRegistry(stacks=[StackInfo.model_validate(
        {"stack_id": "a", "mn": "MN1", "password": "123456", "sector": "cement",
         "process": "kiln_tail"})])
    registry.dump(tmp_path / "r.yaml", scrypt_n=1024)
    registry.dump(tmp_path / "default.yaml")
    cheap = StackRegistry.load(tmp_path / "r.yaml").by_mn("MN1")
    default = StackRegistry.load(tmp_path / "default.yaml").by_mn("MN1")
    assert cheap is not None and default is not None
    assert cheap.password_hash is not None and cheap.password_hash.startswith("scrypt$1024$8$1$")
    assert default.password_hash is not None
    assert default.password_hash.startswith("scrypt$16384$8$1$")
    assert cheap.password_matches("123456") and not cheap.password_matches("123457")
