"""What a HACS install needs: brand images, a zip release, and a manifest whose
requirement is the version we publish (Home Assistant installs exactly that)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tomllib

from fleet_ha import REPO_ROOT

COMPONENT = REPO_ROOT / "custom_components" / "fleet_telematics"


def test_brand_images_are_square_pngs() -> None:
    # Home Assistant 2026.3 and later read brand/ from a custom integration.
    for name in ("icon.png", "logo.png"):
        data = (COMPONENT / "brand" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (256, 256), name


def test_manifest_requires_the_version_the_wheel_has() -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    manifest = json.loads((COMPONENT / "manifest.json").read_text())
    assert manifest["version"] == version
    assert manifest["requirements"] == [f"fleet-telematics-bridge=={version}"]
    hacs = json.loads((REPO_ROOT / "hacs.json").read_text())
    assert hacs["zip_release"] is True
    assert hacs["filename"] == "fleet_telematics.zip"


def test_the_release_check_refuses_a_tag_of_another_version() -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    check = [sys.executable, str(REPO_ROOT / "scripts" / "ha-release-check")]
    assert subprocess.run([*check, f"v{version}"], capture_output=True).returncode == 0
    wrong = subprocess.run([*check, "v99.0.0"], capture_output=True, text=True)
    assert wrong.returncode == 1
    assert "tag v99.0.0" in wrong.stderr


def test_the_hacs_zip_holds_the_integration_folder_at_its_root(tmp_path) -> None:
    """HACS unpacks the release asset into custom_components/fleet_telematics/:
    manifest.json at the zip's root, brand/ and translations/ kept, no byte caches.
    The release workflow and scripts/ha-smoke build it with the same script."""
    import zipfile

    (COMPONENT / "__pycache__").mkdir(exist_ok=True)
    (COMPONENT / "__pycache__" / "stray.cpython-311.pyc").write_bytes(b"")
    try:
        out = tmp_path / "fleet_telematics.zip"
        script = REPO_ROOT / "scripts" / "ha-hacs-zip"
        subprocess.run([sys.executable, str(script), str(out)], check=True, capture_output=True)
        names = set(zipfile.ZipFile(out).namelist())
    finally:
        (COMPONENT / "__pycache__" / "stray.cpython-311.pyc").unlink()

    shipped = {
        p.relative_to(COMPONENT).as_posix()
        for p in COMPONENT.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert names == shipped
    assert {"manifest.json", "brand/icon.png", "brand/logo.png", "translations/en.json"} <= names
    workflow = (REPO_ROOT / ".github" / "workflows" / "release.yml").read_text()
    assert "scripts/ha-hacs-zip dist-hacs/fleet_telematics.zip" in workflow
