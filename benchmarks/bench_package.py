"""Size of the Lambda package on Lambda's own platform, against the 250 MB unzipped limit.

    nice -n 10 .venv/bin/python benchmarks/bench_package.py [--sam-build DIR]

Downloads ``functions/requirements.txt`` as the function's runtime needs it (python3.12,
x86_64: CPython 3.12 wheels for manylinux2014 or manylinux_2_28, binary only), installs the
wheels into a folder beside ``functions/scorer`` as ``sam build`` lays them out, and prints
the unzipped size (the limit), the zipped size and the largest entries. When a ``sam build``
artifact exists (``make sam-build``; ``--sam-build`` names another) it is measured the same
way, side by side. Python 3.12 on Amazon Linux 2023 has glibc 2.34, so manylinux_2_28 wheels
(numpy 2.4 ships no manylinux2014 one) are installable there. Prints Markdown
(docs/formats.md holds the latest run). Needs the package index (pip's configuration).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = REPO / "functions"
SAM_BUILD = REPO / ".aws-sam" / "build" / "ScoreFunction"
LIMIT = 250 * 2**20  # Lambda's 250 MB unzipped (package and layers): 262,144,000 bytes
LAMBDA_PLATFORM = [
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "manylinux_2_28_x86_64",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    "--only-binary=:all:",
]


def files(path: Path) -> list[Path]:
    """The files a package ships: not the __pycache__ that running it from the folder left
    (the local stack runs the sam build artifact in place)."""
    if path.is_file():
        return [path]
    found = path.rglob("*")
    return sorted(f for f in found if f.is_file() and "__pycache__" not in f.parts)


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in files(path))


def zipped_bytes(folder: Path, out: Path) -> int:
    """The folder zipped as Lambda takes it (deflate, paths relative to the folder)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for f in files(folder):
            archive.write(f, f.relative_to(folder))
    return out.stat().st_size


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")


def build(work: Path) -> tuple[Path, list[Path]]:
    """The package for Lambda's platform in ``work/package``; also the wheels used."""
    wheels, package = work / "wheels", work / "package"
    requirements = str(FUNCTIONS / "requirements.txt")
    pip("download", "--quiet", "-r", requirements, "-d", str(wheels), *LAMBDA_PLATFORM)
    # Installed from the downloaded wheels only, for the same platform, without compiling
    # .pyc files (sam build unpacks the wheels as they are; Python compiles at import).
    pip(
        "install",
        "--quiet",
        "--no-compile",
        "--no-index",
        "--find-links",
        str(wheels),
        "--target",
        str(package),
        "-r",
        requirements,
        *LAMBDA_PLATFORM,
    )
    shutil.copytree(
        FUNCTIONS / "scorer", package / "scorer", ignore=shutil.ignore_patterns("__pycache__")
    )
    return package, sorted(wheels.glob("*.whl"))


def entries(folder: Path, top: int) -> list[tuple[str, int]]:
    """The largest top-level entries, a package's ``.libs`` folder counted with it."""
    sizes: dict[str, int] = {}
    for path in folder.iterdir():
        name = path.name.removesuffix(".libs")
        if name.endswith(".dist-info") or name == "bin":
            name = "(dist-info, bin)"
        sizes[name] = sizes.get(name, 0) + tree_bytes(path)
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam-build", type=Path, default=SAM_BUILD, help="a sam build artifact")
    parser.add_argument("--top", type=int, default=8, help="largest entries listed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        package, wheels = build(Path(tmp))
        built = {"pip, cp312 manylinux wheels (Lambda's platform)": package}
        if (args.sam_build / "scorer").is_dir():
            built[f"sam build ({os.path.relpath(args.sam_build, REPO)})"] = args.sam_build
        print("wheels: " + ", ".join(w.name for w in wheels) + "\n")
        print("| package | unzipped (MiB) | of 250 MiB | zipped (MiB) |")
        print("|---|---:|---:|---:|")
        for name, folder in built.items():
            size = tree_bytes(folder)
            zipped = zipped_bytes(folder, Path(tmp) / "package.zip")
            print(f"| {name} | {size / 2**20:.1f} | {size / LIMIT:.0%} | {zipped / 2**20:.1f} |")
        print("\n| entry (Lambda's platform) | MiB |")
        print("|---|---:|")
        for name, size in entries(package, args.top):
            print(f"| {name} | {size / 2**20:.1f} |")
        over = tree_bytes(package) > LIMIT
    verdict = "OVER" if over else "under"
    print(f"\n{verdict} Lambda's limit: 250 MB unzipped, 262,144,000 bytes (250 MiB)")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
