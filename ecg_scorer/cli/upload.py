"""``ecg-scorer upload``: files, or folders recursively, to ``incoming/<site>/<device>/``,
in parallel, with a progress line and a count at the end."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TextIO

from scorer import keys

from ecg_scorer import render
from ecg_scorer.cli.context import CliError, Context


def planned(paths: list[Path], site: str, device: str, name: str | None) -> list[tuple[Path, str]]:
    """(local file, key) for every file named or found below a named folder.

    A folder's files keep their path below it (``day1/rec.csv`` -> ``.../<device>/day1/rec.csv``);
    hidden files (``.DS_Store``) are skipped. ValueError for a missing path or a bad name.
    """
    if name is not None and (len(paths) != 1 or not paths[0].is_file()):
        raise ValueError("--name needs exactly one file")
    plan = []
    for path in paths:
        if path.is_file():
            plan.append((path, keys.incoming_key(site, device, name or path.name)))
        elif path.is_dir():
            plan += [
                (f, keys.incoming_key(site, device, f.relative_to(path).as_posix()))
                for f in _files_below(path)
            ]
        else:
            raise ValueError(f"no such file or folder: {path}")
    if not plan:
        raise ValueError(f"no files found in {', '.join(map(str, paths))}")
    return plan


def _files_below(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file() and not hidden:
            yield path


def metadata_of(pairs: list[str] | None) -> dict[str, str]:
    metadata = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"bad --metadata {pair!r}: expected KEY=VALUE")
        metadata[name] = value
    return metadata


def upload_all(
    s3: Any,
    bucket: str,
    plan: list[tuple[Path, str]],
    metadata: dict[str, str],
    jobs: int,
    progress: render.Progress,
) -> tuple[int, list[tuple[Path, str]]]:
    """Upload every planned file; returns (bytes sent, [(file, why) that failed])."""
    extra = {"Metadata": metadata} if metadata else None
    sent, failed, done = 0, [], 0

    def one(path: Path, key: str) -> int:
        s3.upload_file(str(path), bucket, key, ExtraArgs=extra)
        return path.stat().st_size

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, path, key): path for path, key in plan}
        for future in as_completed(futures):
            try:
                sent += future.result()
            except Exception as e:  # one file's failure is reported, the others go on
                failed.append((futures[future], f"{type(e).__name__}: {e}"))
            done += 1
            progress.count(done, len(plan))
    return sent, failed


def cmd_upload(ctx: Context, out: TextIO) -> int:
    args = ctx.args
    plan = planned([Path(p) for p in args.paths], args.site, args.device, args.name)
    metadata = metadata_of(args.metadata)
    bucket = ctx.name("bucket")
    s3 = ctx.client("s3")
    if len(plan) == 1:
        path, key = plan[0]
        s3.upload_file(
            str(path), bucket, key, ExtraArgs={"Metadata": metadata} if metadata else None
        )
        out.write(f"uploaded {path.stat().st_size} bytes to s3://{bucket}/{key}\n")
        return 0
    progress = render.Progress("uploading")
    sent, failed = upload_all(s3, bucket, plan, metadata, args.jobs, progress)
    progress.finish()
    target = f"s3://{bucket}/{keys.prefix(args.site, args.device)}"
    out.write(
        f"uploaded {render.plural(len(plan) - len(failed), 'file')} ({sent} bytes) to {target}\n"
    )
    for path, why in failed:
        print(f"not uploaded: {path}: {why}", file=sys.stderr)
    if failed:
        raise CliError(f"{render.plural(len(failed), 'file')} not uploaded (listed above)")
    return 0
