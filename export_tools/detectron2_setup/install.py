"""Install Detectron2's real Python code into this environment, for export and parity tests.

    python -m export_tools.detectron2_setup.install

If ``import detectron2`` already works (e.g. you installed it from GitHub, the standard way:
``pip install 'git+https://github.com/facebookresearch/detectron2.git@v0.6'``), this does
nothing.  Otherwise it fetches Detectron2 v0.6's sources from PyPI (``pb1-detectron2==0.6``,
hash-pinned in ``detectron2-source.txt`` beside this file), checks the hash, unpacks them
under the cache folder and adds them to this environment's path with a ``.pth`` file.
``pip install`` of that sdist cannot work: it lacks the C++ sources its setup.py compiles.
What it lacks is covered by ``export_tools.detectron2_setup.shims`` (see there); nothing of
Detectron2 is re-implemented.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from d2_triton.cache import cache_dir
from d2_triton.commands import Parser, command
from d2_triton.errors import D2TritonError

HERE = Path(__file__).resolve().parent
SOURCE_REQUIREMENT = HERE / "detectron2-source.txt"
SDIST_NAME = "pb1-detectron2-0.6"


class InstallError(D2TritonError, RuntimeError):
    """Detectron2's sources cannot be found, fetched, checked or unpacked."""


PTH_NAME = "detectron2-v0.6-sources.pth"


def detectron2_importable() -> bool:
    """Whether ``import detectron2`` would work in this environment."""
    return importlib.util.find_spec("detectron2") is not None


def pinned_source() -> tuple[str, str, str]:
    """(name, version, sha256) from export_tools/detectron2_setup/detectron2-source.txt."""
    for line in SOURCE_REQUIREMENT.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})", line)
        if match:
            return match.group(1), match.group(2), match.group(3)
    raise InstallError(f"no 'name==version --hash=sha256:...' line in {SOURCE_REQUIREMENT}")


def pip_index_url() -> str:
    """The index pip is configured with: PIP_INDEX_URL, pip's configuration, pip's default."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    configured = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    for line in configured.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith(".index-url"):
            return value.strip().strip("'\"")
    from pip._internal.models.index import PyPI

    return PyPI.simple_url


def sdist_url(name: str, filename: str, index: str) -> str:
    """The file's address on a PEP 503 simple index (pip's own index by default)."""
    page_url = f"{index.rstrip('/')}/{name}/"
    with urllib.request.urlopen(page_url, timeout=60) as response:
        page = response.read().decode("utf-8", errors="replace")
    for href in re.findall(r'href="([^"]+)"', page):
        if href.split("#", 1)[0].rsplit("/", 1)[-1] == filename:
            return urllib.parse.urljoin(page_url, html.unescape(href).split("#", 1)[0])
    raise InstallError(f"{filename} is not listed on {page_url}")


def download_sdist(directory: Path) -> Path:
    """Fetch the pinned sdist from the package index and check its sha256.

    Not ``pip download``: pip prepares an sdist's metadata even with ``--no-deps``, and recent
    pip refuses this one because its ``[all]`` extra names a GitHub URL.  We only need the
    file, byte-for-byte the one the hash pins.
    """
    name, version, expected = pinned_source()
    filename = f"{name}-{version}.tar.gz"
    index = pip_index_url()
    url = sdist_url(name, filename, index)
    print(f"downloading {url}", flush=True)
    target = directory / filename
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=300) as response, open(target, "wb") as handle:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            handle.write(block)
    if digest.hexdigest() != expected:
        raise InstallError(
            f"{filename}: sha256 {digest.hexdigest()} does not match the pinned {expected}"
        )
    return target


def unpack(sdist: Path, destination: Path) -> Path:
    """Extract the sdist; returns the folder that holds the ``detectron2`` package.

    What tarfile's "data" filter does (it is missing from some 3.11 builds): only plain files
    and folders inside ``destination``, owned by whoever extracts, readable by everyone.  The
    archive's own modes (0770, uid 10077) would hide the code from a non-root user, such as
    the one the docker image runs as.
    """
    destination = destination.resolve()
    with tarfile.open(sdist) as archive:
        members = archive.getmembers()
        for member in members:
            target = (destination / member.name).resolve()
            if not (member.isfile() or member.isdir()) or destination not in target.parents:
                raise InstallError(f"refusing suspicious archive member {member.name!r}")
            member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
            member.mode = 0o755 if member.isdir() else 0o644
        archive.extractall(destination, members=members)
    root = destination / SDIST_NAME
    if not (root / "detectron2" / "__init__.py").is_file():
        raise InstallError(f"{sdist} does not contain detectron2/__init__.py")
    return root


def link_into_environment(source_root: Path) -> Path:
    """Put ``source_root`` on this environment's path with a .pth file; returns it."""
    pth = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    pth.write_text(f"{source_root}\n", encoding="utf-8")
    return pth


@command("python -m export_tools.detectron2_setup.install")
def main(argv: list[str] | None = None) -> int:
    """Install Detectron2's sources unless it imports already; returns the exit status."""
    parser = Parser(
        prog="python -m export_tools.detectron2_setup.install", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--cache", type=Path, default=cache_dir(), help="default: d2_triton.cache")
    parser.add_argument("--force", action="store_true", help="reinstall even if importable")
    args = parser.parse_args(argv)
    if detectron2_importable() and not args.force:
        spec = importlib.util.find_spec("detectron2")
        print(f"detectron2 already importable from {spec.origin}; nothing to do")
        return 0
    source_dir = args.cache.absolute() / "detectron2-sources"
    root = source_dir / SDIST_NAME
    try:
        if not (root / "detectron2" / "__init__.py").is_file():
            source_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as download_dir:
                root = unpack(download_sdist(Path(download_dir)), source_dir)
        pth = link_into_environment(root)
    except (InstallError, OSError) as error:
        print(f"installing Detectron2 failed: {error}", file=sys.stderr)
        return 1
    print(f"Detectron2 v0.6 Python sources in {root}, on this environment's path via {pth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
