"""The registry fixture of the remote tests (oci_registry.py): Debian's
docker-registry on 127.0.0.1, TLS and htpasswd auth, started once per module
and always stopped."""
import pytest

from remote.oci_registry import start_registry, stop_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield reg
    finally:
        stop_registry(reg)
