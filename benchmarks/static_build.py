"""`feedsvc build` against Hugo: the same generated corpus, in one run, round-robin.

    python -m benchmarks.static_build [--sizes 1000 10000 100000] [--rounds 3]
        [--out docs/benchmarks.md] [--work-dir /tmp/feedsvc-bench] [--quick]

For each size N the corpus (benchmarks.corpus) is generated once, or reused from the
work folder when its marker matches (the same marker benchmarks.run writes), and a plain
Hugo site is made over a copy of it (`for_hugo`: only the date lines are written so that
Hugo reads them). Then, in every round:

1. Hugo, cold: an empty cache folder and an empty output folder;
2. `feedsvc build`, cold: an empty cache folder and an empty output folder;
3. `feedsvc build`, warm: the cache step 2 left, an empty output folder;
4. one body edited (a sentence appended to one item file), then `feedsvc build` into the
   output folder of step 3 with its cache, and Hugo into the output folder of step 1;
   the item file (and Hugo's copy) is restored afterwards.

At 100,000 items, steps 2 and 3 each run between two builds of the same case at 10,000
items, which the growth targets divide by (`Paired`).

Every build is timed (wall clock), its peak memory taken (the whole process tree, see
`TreeSampler`), and its output counted (files, bytes, files changed by the edit). The
report is a section of docs/benchmarks.md between the BEGIN and END markers; a rerun
replaces that section and leaves the rest of the file as it is. Hugo is Debian's `hugo`,
installed with apt-get when missing. Only local files are touched: nothing goes over a
network.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import corpus
from benchmarks.system import (
    BASE_URL,
    BIN,
    TOP,
    compile_package,
    ensure_package,
    machine,
    machine_busy_seconds,
    own_cpu_seconds,
    replace_text,
    sizes,
)

BEGIN = "<!-- static-build:begin -->"
END = "<!-- static-build:end -->"
SECTION = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.DOTALL)
NOTES_HEADING = re.compile(r"^## Notes[ \t]*$", re.MULTILINE)
SAMPLE_EVERY = 0.05  # seconds between samples of the process tree's memory
QUIET_LOAD = 0.25  # cores the rest of the machine may use when a build starts
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: feedsvc's defaults, given to Hugo too: 20 items per list page, 50 items per feed.
PAGE_ITEMS = 20
FEED_ITEMS = 50
EDIT = "\nThis sentence was appended to measure the rebuild after one edited body.\n"

# -- the targets (at 10,000 items unless said) ---------------------------------------------
COLD_LIMIT = 1.5  # cold `feedsvc build` ÷ Hugo's median
WARM_LIMIT = 0.5  # warm `feedsvc build` ÷ Hugo's median
EDIT_LIMIT = 2.0  # seconds, one edited body into the same folder
GROWTH_LIMIT = 10.0  # 100,000 items ÷ 10,000 items, time
GROWTH_BASE = 10_000  # the size the growth targets divide by
MEMORY_LIMIT = 1e9  # bytes of peak memory at 100,000 items


class BenchError(RuntimeError):
    """A build that could not be measured (failed, timed out, wrong output)."""


# -- the Hugo site -------------------------------------------------------------------------

HUGO_CONFIG = """\
baseURL = "{base_url}/"
title = "feedsvc benchmark corpus"
languageCode = "en"
contentDir = "{content}"
timeZone = "UTC"
paginate = {page_items}
disableKinds = []
enableRobotsTXT = false

[services.rss]
limit = {feed_items}

[taxonomies]
tag = "tags"

[markup.goldmark.renderer]
# The corpus bodies carry raw HTML, which feedsvc reads too (and sanitises).
unsafe = true
"""

BASEOF = """\
<!DOCTYPE html>
<html lang="{{ site.LanguageCode }}">
<head>
<meta charset="utf-8">
<title>{{ if not .IsHome }}{{ .Title }} · {{ end }}{{ site.Title }}</title>
{{ with .OutputFormats.Get "rss" }}<link rel="alternate" type="application/rss+xml"
  href="{{ .Permalink }}" title="{{ site.Title }}">{{ end }}
</head>
<body>
<header><a href="{{ "/" | relURL }}">{{ site.Title }}</a></header>
<main>{{ block "main" . }}{{ end }}</main>
</body>
</html>
"""

# The home page lists every item, as feedsvc's "all" list does; other lists their own.
LIST = """\
{{ define "main" }}
<h1>{{ .Title }}</h1>
{{ $pages := .Pages }}{{ if .IsHome }}{{ $pages = site.RegularPages }}{{ end }}
{{ $pager := .Paginate $pages }}
<ul>
{{ range $pager.Pages }}
<li><a href="{{ .RelPermalink }}">{{ .Title }}</a>
<time datetime="{{ .Date.Format "2006-01-02T15:04" }}">{{ .Date.Format "2 January 2006" }}</time>
<p>{{ .Summary }}</p></li>
{{ end }}
</ul>
<nav>
{{ with $pager.Prev }}<a rel="prev" href="{{ .URL }}">newer</a>{{ end }}
{{ with $pager.Next }}<a rel="next" href="{{ .URL }}">older</a>{{ end }}
</nav>
{{ end }}
"""

SINGLE = """\
{{ define "main" }}
<article>
<h1>{{ .Title }}</h1>
<p><time datetime="{{ .Date.Format "2006-01-02T15:04" }}">
{{- .Date.Format "2 January 2006, 15:04" }}</time>
{{ with .Params.author }} · {{ . }}{{ end }}</p>
<p>{{ range .GetTerms "tags" -}}
<a rel="tag" href="{{ .RelPermalink }}">{{ .LinkTitle }}</a> {{ end }}</p>
{{ .Content }}
</article>
{{ end }}
"""


def make_hugo_site(site: Path, content: Path) -> None:
    """A plain Hugo site over `content`: a paginated list, an article page with tag links,
    and Hugo's own RSS for the home page, each section and each tag."""
    layouts = site / "layouts" / "_default"
    layouts.mkdir(parents=True, exist_ok=True)
    config = HUGO_CONFIG.format(
        base_url=BASE_URL, content=content, page_items=PAGE_ITEMS, feed_items=FEED_ITEMS
    )
    (site / "hugo.toml").write_text(config)
    (layouts / "baseof.html").write_text(BASEOF)
    (layouts / "list.html").write_text(LIST)
    (layouts / "single.html").write_text(SINGLE)


DATE_LINE = re.compile(r"^date: (\d{4}-\d\d-\d\d) (\d\d:\d\d)$", re.MULTILINE)


def for_hugo(text: str) -> str:
    """Hugo reads a date without seconds ("2023-01-01 23:41") as the year 1; the same
    date with seconds it reads in the site's timeZone (UTC), as feedsvc reads it."""
    return DATE_LINE.sub(r"date: \1T\2:00", text, count=1)


def copy_for_hugo(items: Path, content: Path) -> None:
    """Hugo's content folder: the corpus, each file with its date line as `for_hugo`
    writes it and nothing else changed."""
    shutil.rmtree(content, ignore_errors=True)
    for path in sorted(items.glob("*/*.md")):
        target = content / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(for_hugo(path.read_text(encoding="utf-8")), encoding="utf-8")


def check_hugo_dates(items: Path, out: Path, samples: int = 5) -> None:
    """Hugo must read the corpus dates ("2023-01-01 23:41", no zone) as feedsvc does (in
    UTC): a few article pages must show their file's date, and every item needs a page."""
    files = sorted(items.glob("*/*.md"))
    pages = list(out.glob("*/*/index.html"))
    if len(pages) < len(files):
        raise BenchError(f"Hugo wrote {len(pages)} article pages for {len(files)} items")
    for path in files[:: max(1, len(files) // samples)][:samples]:
        match = DATE_LINE.search(path.read_text(encoding="utf-8"))
        if match is None:
            raise BenchError(f"no date line in {path}")
        page = out / path.parent.name / path.stem.lower() / "index.html"
        wanted = f'datetime="{match.group(1)}T{match.group(2)}"'
        if not page.exists() or wanted not in page.read_text(encoding="utf-8"):
            raise BenchError(f"Hugo's {page} does not show the date of {path} ({wanted})")


# -- the corpus ----------------------------------------------------------------------------


@dataclass
class Folders:
    """One size's folders; the corpus is shared with benchmarks.run's, the rest is ours."""

    root: Path  # <work>/<n>

    @property
    def items(self) -> Path:
        return self.root / "items"

    @property
    def ours(self) -> Path:
        return self.root / "static-build"

    @property
    def hugo_site(self) -> Path:
        return self.ours / "hugo-site"

    @property
    def hugo_content(self) -> Path:
        return self.ours / "hugo-content"

    @property
    def hugo_cache(self) -> Path:
        return self.ours / "hugo-cache"

    @property
    def hugo_out(self) -> Path:
        return self.ours / "hugo-out"

    @property
    def feedsvc_cache(self) -> Path:
        return self.ours / "feedsvc-cache"

    @property
    def feedsvc_out(self) -> Path:
        return self.ours / "feedsvc-out"

    @property
    def cwd(self) -> Path:
        return self.ours / "cwd"

    @property
    def logs(self) -> Path:
        return self.ours / "logs"


def ensure_corpus(folders: Folders, n: int, seed: int) -> float | None:
    """Generate the corpus for `n` unless a complete one is there; seconds, or None if reused."""
    restore_edit(folders)
    items, marker = folders.items, folders.root / "corpus.json"
    source = Path(corpus.__file__).read_bytes()
    wanted = {"count": n, "seed": seed, "generator": hashlib.sha256(source).hexdigest()}
    if marker.exists() and json.loads(marker.read_text()) == wanted and items.is_dir():
        for extra in corpus.extra_files(items):  # left by an interrupted benchmarks.run
            extra.unlink()
        return None
    marker.unlink(missing_ok=True)
    shutil.rmtree(items, ignore_errors=True)
    started = time.perf_counter()
    corpus.generate(items, n, seed)
    elapsed = time.perf_counter() - started
    marker.write_text(json.dumps(wanted))
    return elapsed


def edit_target(items: Path) -> Path:
    """The item whose body is edited: the same one in every run of a size."""
    files = sorted(items.glob("*/*.md"))
    return files[len(files) // 2]


def backup_path(folders: Folders) -> Path:
    return folders.ours / "edited.json"


def edit_one(folders: Folders) -> Path:
    """Append a sentence to one item's body, in the corpus and in Hugo's copy of it. The
    originals are saved first, so that even a killed run leaves files the next run can
    restore (`restore_edit`)."""
    path = edit_target(folders.items)
    copy = folders.hugo_content / path.parent.name / path.name
    originals = {str(p): p.read_text(encoding="utf-8") for p in (path, copy)}
    backup_path(folders).write_text(json.dumps(originals), encoding="utf-8")
    for name, text in originals.items():
        Path(name).write_text(text + EDIT, encoding="utf-8")
    return path


def restore_edit(folders: Folders) -> None:
    backup = backup_path(folders)
    if backup.exists():
        for name, text in json.loads(backup.read_text(encoding="utf-8")).items():
            Path(name).write_text(text, encoding="utf-8")
        backup.unlink()


# -- measuring one build -------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.extend(int(c) for c in (task / "children").read_text().split())
    except OSError:  # the process has just ended
        pass
    return found


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int:
    """The proportional set size: each shared page divided among the processes that map
    it, so that a sum over forked processes counts every page once."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


class TreeSampler(threading.Thread):
    """Every SAMPLE_EVERY seconds, the RSS summed over a process and all its descendants;
    keeps the largest sum. It sees every worker a build starts, which the rusage of the
    build's own process does not add up; pages that forked processes share are counted
    in each, so with several processes the sum is an upper bound of the memory used.
    The PSS summed over the same processes, which counts a shared page once, is kept
    beside it."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.pss_peak = 0
        self.most_processes = 0
        self.done = threading.Event()

    def sample(self) -> None:
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children(pid))
        self.peak = max(self.peak, sum(rss_bytes(pid) for pid in tree))
        self.pss_peak = max(self.pss_peak, sum(pss_bytes(pid) for pid in tree))
        self.most_processes = max(self.most_processes, len(tree))

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(SAMPLE_EVERY)

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def settle(*inputs: Path) -> None:
    """Start every build from the same state: what earlier builds, and the removal of
    their folders, left to write is on disk (no build pays for another's writes), and
    the build's input files (each file of `inputs`, and every file under a folder of
    them) are in the page cache, even after a build that took most of the memory
    (Hugo's, at 100,000 items)."""
    os.sync()
    files = [str(path) for path in inputs if path.is_file()]
    for folder in (path for path in inputs if path.is_dir()):
        files += (os.path.join(top, name) for top, _, names in os.walk(folder) for name in names)
    for name in files:
        with open(name, "rb") as file:
            while file.read(1 << 20):
                pass


def wait_quiet(limit: float) -> float:
    """Give other work on the machine up to `limit` seconds to finish; the load left."""
    deadline = time.monotonic() + limit
    other = 0.0
    while True:
        busy, ours, started = machine_busy_seconds(), own_cpu_seconds(), time.monotonic()
        time.sleep(1.0)
        elapsed = time.monotonic() - started
        other = max(0.0, machine_busy_seconds() - busy - (own_cpu_seconds() - ours)) / elapsed
        if other < QUIET_LOAD or time.monotonic() >= deadline:
            return other


@dataclass
class Process:
    seconds: float
    tree_peak: int  # bytes: the largest sampled RSS sum over the process tree
    tree_pss: int  # bytes: the largest sampled PSS sum over the same
    largest: int  # bytes: ru_maxrss from wait4, the largest single process waited for
    processes: int  # the most processes seen at once in the tree
    cpu: float  # seconds, user + system, of the tree's processes waited for
    other_cores: float  # the rest of the machine's load during the build
    output: str


def run_measured(
    argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path, timeout: float
) -> Process:
    """Run one build to its end: wall time, memory, CPU. `timeout` is a safety net only."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        busy, ours = machine_busy_seconds(), own_cpu_seconds()
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    sampler = TreeSampler(process.pid)
    sampler.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):  # its own group: the build, its workers
            os.killpg(process.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    reaped = False
    try:
        _, status, usage = os.wait4(process.pid, 0)
        reaped = True
        seconds = time.perf_counter() - started
    finally:
        timer.cancel()
        sampler.stop()
        if not reaped:  # interrupted (Ctrl-C, SIGTERM): no build is left running
            kill()
            os.waitpid(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    # This process's clocks include the build's once it is waited for, and the sampler's.
    other = max(0.0, machine_busy_seconds() - busy - (own_cpu_seconds() - ours)) / seconds
    text = log.read_text(errors="replace")
    if timed_out.is_set():
        raise BenchError(f"{argv[0]} did not finish in {timeout:.0f} s; killed")
    if process.returncode != 0:
        raise BenchError(f"{shlex.join(argv)} exited with {process.returncode}: {text[-2000:]}")
    return Process(
        seconds,
        sampler.peak,
        sampler.pss_peak,
        usage.ru_maxrss * 1024,
        sampler.most_processes,
        cpu,
        other,
        text,
    )


Listing = dict[str, tuple[int, int]]  # relative path -> (size, mtime_ns)


def listing(folder: Path) -> Listing:
    found: Listing = {}

    def walk(path: str, prefix: str) -> None:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path, prefix + entry.name + "/")
                else:
                    stat = entry.stat(follow_symlinks=False)
                    found[prefix + entry.name] = (stat.st_size, stat.st_mtime_ns)

    if folder.exists():
        walk(str(folder), "")
    return found


def changed_files(before: Listing, after: Listing) -> list[str]:
    """Files written, added or removed: a different size or modification time, or new/gone."""
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


@dataclass
class Run:
    tool: str  # "hugo" or "feedsvc"
    case: str  # "cold", "warm" or "edit"
    seconds: float
    tree_peak: int
    tree_pss: int
    largest: int
    processes: int
    cpu: float
    other_cores: float
    files: int
    bytes: int
    changed: int | None = None  # edit: files changed in the output folder
    summary: str | None = None  # feedsvc's own summary line
    parts: str | None = None  # feedsvc's own account of what each part took

    @property
    def peak(self) -> int:
        """The peak memory reported: the larger of the sampled tree sum and the largest
        single process (sampling every 50 ms can miss a short peak that wait4 records)."""
        return max(self.tree_peak, self.largest)


LARGE = 100_000
PARTS = re.compile(r"^took [\d.]+ s: (.*)$", re.MULTILINE)
SUMMARY = re.compile(r"^(\d+) files written, (\d+) unchanged, (\d+) removed in .*$", re.MULTILINE)


@dataclass
class Bench:
    work: Path
    seed: int
    rounds: int
    timeout: float
    quiet_wait: float
    large_rounds: int = 0  # rounds for LARGE items and more (0: `rounds`)

    def rounds_for(self, n: int) -> int:
        return self.large_rounds if self.large_rounds and n >= LARGE else self.rounds

    def say(self, n: int, message: str) -> None:
        print(f"[{n:>7,}] {message}", file=sys.stderr, flush=True)

    def feedsvc_env(self, folders: Folders) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDSVC_", "GUNICORN"))}
        env.update(
            FEEDSVC_ITEMS_DIR=str(folders.items),
            FEEDSVC_BASE_URL=BASE_URL,
            FEEDSVC_CACHE_DIR=str(folders.feedsvc_cache),
            FEEDSVC_TIMEZONE="UTC",
        )
        return env

    def build(self, folders: Folders, tool: str, case: str, fresh: bool) -> Run:
        """One build. `fresh`: into an empty output folder; otherwise into the last one."""
        if tool == "hugo":
            out, cache = folders.hugo_out, folders.hugo_cache
            argv = ["hugo", "--quiet", "--source", str(folders.hugo_site),
                    "--destination", str(out), "--cacheDir", str(cache)]  # fmt: skip
            env = {k: v for k, v in os.environ.items() if not k.startswith("HUGO_")}
            cwd = folders.hugo_site
        else:
            out, cache = folders.feedsvc_out, folders.feedsvc_cache
            argv = [str(BIN / "feedsvc"), "build", str(out)]
            env = self.feedsvc_env(folders)
            cwd = folders.cwd  # empty: no feedsvc.toml is read
        if case == "cold":
            shutil.rmtree(cache, ignore_errors=True)
        if fresh:
            shutil.rmtree(out, ignore_errors=True)
        before = {} if fresh else listing(out)
        for folder in (cache, cwd):
            folder.mkdir(parents=True, exist_ok=True)
        if tool == "hugo":
            settle(folders.hugo_content, cache)
        else:  # the items, and the cache a warm build reads (not the rendered documents)
            settle(folders.items, *(path for path in cache.iterdir() if path.is_file()))
        wait_quiet(self.quiet_wait)
        log = folders.logs / f"{tool}-{case}.log"
        process = run_measured(argv, env, cwd, log, self.timeout)
        after = listing(out)
        changed = None if fresh else changed_files(before, after)
        if changed is not None:  # the list, for a look after the run
            text = "".join(f"{path}\n" for path in changed)
            (folders.logs / f"{tool}-{case}-changed.txt").write_text(text)
        summary = SUMMARY.search(process.output)
        run = Run(
            tool,
            case,
            process.seconds,
            process.tree_peak,
            process.tree_pss,
            process.largest,
            process.processes,
            process.cpu,
            process.other_cores,
            len(after),
            sum(size for size, _ in after.values()),
            None if changed is None else len(changed),
            summary.group(0).partition(" in ")[0] if summary else None,
            parts.group(1) if (parts := PARTS.search(process.output)) else None,
        )
        self.say(
            int(folders.root.name),
            f"{tool} {case}: {run.seconds:.2f} s, {run.peak / 1e6:.0f} MB, {run.files:,} files"
            + (f", {run.changed:,} changed" if run.changed is not None else ""),
        )
        return run


@dataclass(frozen=True)
class Paired:
    """A build of LARGE items and the GROWTH_BASE-item builds of the same case run just
    before and just after it: machine speed drifts by a quarter within a run, and the
    sizes are otherwise measured minutes apart."""

    case: str
    seconds: float
    beside: tuple[float, float]

    @property
    def ratio(self) -> float:
        return self.seconds / statistics.mean(self.beside)


@dataclass
class SizeResult:
    n: int
    corpus_seconds: float | None = None
    runs: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    paired: list[Paired] = field(default_factory=list)

    def of(self, tool: str, case: str) -> list[Run]:
        return [r for r in self.runs if r.tool == tool and r.case == case]

    def median(self, tool: str, case: str) -> float | None:
        runs = self.of(tool, case)
        return statistics.median(r.seconds for r in runs) if runs else None


def measure_size(bench: Bench, n: int, base: Folders | None = None) -> SizeResult:
    """Every round at `n` items. With `base` (the GROWTH_BASE-item folders, `n` being
    LARGE or more), each cold and warm `feedsvc build` runs between two builds of the same
    case at that size (`Paired`)."""
    result = SizeResult(n)
    folders = Folders(bench.work / str(n))
    folders.ours.mkdir(parents=True, exist_ok=True)
    result.corpus_seconds = ensure_corpus(folders, n, bench.seed)
    made = result.corpus_seconds
    bench.say(n, f"corpus: {'reused' if made is None else f'generated in {made:.1f} s'}")

    def ours(case: str) -> Run:
        if base is None:
            return bench.build(folders, "feedsvc", case, fresh=True)
        before = bench.build(base, "feedsvc", case, fresh=True)
        run = bench.build(folders, "feedsvc", case, fresh=True)
        after = bench.build(base, "feedsvc", case, fresh=True)
        result.paired.append(Paired(case, run.seconds, (before.seconds, after.seconds)))
        return run

    copy_for_hugo(folders.items, folders.hugo_content)
    make_hugo_site(folders.hugo_site, folders.hugo_content)
    rounds = bench.rounds_for(n)
    for number in range(1, rounds + 1):
        bench.say(n, f"round {number} of {rounds}")
        try:
            result.runs.append(bench.build(folders, "hugo", "cold", fresh=True))
            check_hugo_dates(folders.items, folders.hugo_out)
            result.runs.append(ours("cold"))
            result.runs.append(ours("warm"))
            try:
                edit_one(folders)
                result.runs.append(bench.build(folders, "feedsvc", "edit", fresh=False))
                result.runs.append(bench.build(folders, "hugo", "edit", fresh=False))
            finally:
                restore_edit(folders)
        except (BenchError, OSError, subprocess.SubprocessError) as error:
            result.failures.append(f"round {number}: {error}")
            bench.say(n, f"round {number} FAILED: {error}")
    for folder in (folders.hugo_out, folders.feedsvc_out, *([base.feedsvc_out] if base else [])):
        shutil.rmtree(folder, ignore_errors=True)  # at 100,000 items, gigabytes
    return result


# -- the report ----------------------------------------------------------------------------

CASES = (
    ("hugo", "cold", "Hugo, cold (empty cache and output folders)", "cold"),
    ("feedsvc", "cold", "`feedsvc build`, cold (empty cache and output folders)", "cold"),
    ("feedsvc", "warm", "`feedsvc build`, warm (cache kept, empty output folder)", "cold"),
    ("hugo", "edit", "Hugo, one body edited (same output folder)", "edit"),
    ("feedsvc", "edit", "`feedsvc build`, one body edited (same folder, cache kept)", "edit"),
)


def mb(value: float) -> str:
    return f"{value / 1e6:,.0f}"


def each(values: Sequence[float], fmt: str) -> str:
    return " · ".join(format(v, fmt) for v in values) or "–"


def size_table(r: SizeResult) -> list[str]:
    rows = [
        "| build | time, median | each run | each run ÷ Hugo's median | peak memory, MB "
        "| largest process, MB | PSS, MB | processes | CPU, s | files | MB written "
        "| files changed | other load (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tool, case, label, against in CASES:
        runs = r.of(tool, case)
        if not runs:
            rows.append(f"| {label} |" + " – |" * 12)
            continue
        hugo = r.median("hugo", against)
        ratios = each([run.seconds / hugo for run in runs], ".2f") if hugo else "–"
        changed = "–"
        if case == "edit":
            changed = each([run.changed or 0 for run in runs], ",d")
            reported = [run.summary for run in runs if run.summary]
            if reported:
                changed += f" ({reported[-1]})"
        cells = [
            label,
            f"**{statistics.median(run.seconds for run in runs):.2f} s**",
            each([run.seconds for run in runs], ".2f"),
            ratios + ("×" if hugo else ""),
            mb(max(run.peak for run in runs)),
            mb(max(run.largest for run in runs)),
            mb(max(run.tree_pss for run in runs)),
            str(max(run.processes for run in runs)),
            f"{statistics.median(run.cpu for run in runs):.1f}",
            f"{runs[-1].files:,}",
            mb(runs[-1].bytes),
            changed,
            each([run.other_cores for run in runs], ".2f"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    rows.append("")
    for tool, case, label, _ in CASES:
        accounts = [run.parts for run in r.of(tool, case) if run.parts]
        if accounts:  # where the time went, as the build itself says (its last run)
            rows.append(f"- {label}, each part as the build reports it: {accounts[-1]}")
    return [*rows, ""]


Check = tuple[str, str, bool | None]


def target_checks(results: dict[int, SizeResult]) -> list[Check]:
    checks: list[Check] = []
    ten = results.get(10_000)
    hundred = results.get(100_000)

    def ratio(label: str, case: str, limit: float) -> None:
        ours = ten.median("feedsvc", case) if ten else None
        hugo = ten.median("hugo", "cold") if ten else None
        if ours is None or not hugo:
            checks.append((label, "not measured", None))
            return
        shown = f"{ours / hugo:.2f}× ({ours:.2f} s ÷ {hugo:.2f} s)"
        checks.append((label, shown, ours / hugo <= limit))

    ratio(f"cold build, 10,000 items ≤ {COLD_LIMIT}× Hugo's median", "cold", COLD_LIMIT)
    ratio(f"warm build, 10,000 items ≤ {WARM_LIMIT}× Hugo's median", "warm", WARM_LIMIT)
    edit = ten.median("feedsvc", "edit") if ten else None
    checks.append(
        (
            f"one edited body, 10,000 items ≤ {EDIT_LIMIT:.0f} s",
            "not measured" if edit is None else f"{edit:.2f} s",
            None if edit is None else edit <= EDIT_LIMIT,
        )
    )
    for case in ("cold", "warm"):
        big = hundred.median("feedsvc", case) if hundred else None
        small = ten.median("feedsvc", case) if ten else None
        label = f"{case} build, 100,000 items ≤ {GROWTH_LIMIT:.0f}× the 10,000-item time"
        paired = [p for p in hundred.paired if p.case == case] if hundred else []
        if paired:  # the fair comparison: the 10,000-item builds run beside it
            ratio = statistics.median(p.ratio for p in paired)
            beside = " · ".join(f"{b:.1f}" for p in paired for b in p.beside)
            shown = (
                f"{ratio:.1f}× ({each([p.seconds for p in paired], '.1f')} s ÷ the mean of "
                f"the 10,000-item builds just before and after it, {beside} s)"
            )
            if big and small:
                shown += f"; {big / small:.1f}× the 10,000-item median above"
            checks.append((label, shown, ratio <= GROWTH_LIMIT))
        elif big is None or not small:
            checks.append((label, "not measured", None))
        else:
            shown = f"{big / small:.1f}× ({big:.1f} s ÷ {small:.1f} s)"
            checks.append((label, shown, big / small <= GROWTH_LIMIT))
    peaks = [run.peak for run in hundred.runs if run.tool == "feedsvc"] if hundred else []
    checks.append(
        (
            f"peak memory, 100,000 items ≤ {MEMORY_LIMIT / 1e9:.0f} GB",
            f"{max(peaks) / 1e6:,.0f} MB" if peaks else "not measured",
            max(peaks) <= MEMORY_LIMIT if peaks else None,
        )
    )
    return checks


def git(*args: str) -> str:
    argv = ["git", "-C", str(TOP), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


def code_version() -> str:
    changed = git("status", "--porcelain", "--", "feedsvc", "pyproject.toml").splitlines()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = f", with uncommitted changes to {len(changed)} file(s) of feedsvc" if changed else ""
    return f"commit {commit}{dirty}"


def hugo_version() -> str:
    done = subprocess.run(["hugo", "version"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or "unknown"


def render_section(results: Sequence[SizeResult], context: dict[str, str]) -> str:
    status = {None: "not measured", True: "met", False: "**missed**"}
    checks = target_checks({r.n: r for r in results})
    out = [
        BEGIN,
        "## `feedsvc build` against Hugo",
        "",
        "<!-- Written by `python -m benchmarks.static_build`: a rerun replaces this section,",
        "     from the begin marker to the end marker, and nothing else. -->",
        "",
    ]
    if context.get("note"):
        out += [f"**{context['note']}**", ""]
    out += [
        f"- **Date**: {context['date']} (the run took {context['elapsed']})",
        f"- **Command**: `{context['command']}`",
        f"- **Code**: {context['code']}",
        f"- **Hugo**: {context['hugo']}",
        f"- **Machine**: {machine()}",
        "",
        "### Targets",
        "",
        "| target | measured | status |",
        "|---|---|---|",
        *(f"| {label} | {shown} | {status[met]} |" for label, shown, met in checks),
        "",
    ]
    failures = [f"- {r.n:,} items: {failure}" for r in results for failure in r.failures]
    if failures:
        out += ["**Builds that failed:**", "", *failures, ""]
    for r in results:
        made = r.corpus_seconds
        corpus_note = "reused" if made is None else f"generated in {made:.1f} s"
        rounds = len(r.of("hugo", "cold"))
        out += [f"### {r.n:,} items ({rounds} round(s); corpus {corpus_note})", ""]
        out += size_table(r)
    out += [METHOD.strip(), END]
    return "\n".join(out) + "\n"


METHOD = f"""
### How it is measured

- **Corpus**: `python -m benchmarks.corpus` (seed 1), shared with `benchmarks.run` under
  the work folder. The files are in the page cache: "cold" means without a build cache.
- **Hugo site**: `hugo.toml` with `contentDir` = a copy of the corpus in which each
  date line `date: 2023-01-01 23:41` reads `date: 2023-01-01T23:41:00` (Hugo takes a date
  without seconds for the year 1; nothing else differs), `timeZone = "UTC"`,
  `paginate = {PAGE_ITEMS}`, RSS limited to {FEED_ITEMS} items and goldmark's `unsafe = true`
  (the bodies' raw HTML passes, as feedsvc also reads it, sanitised); layouts
  `baseof.html`, `list.html` (paginated; the home page lists every item) and
  `single.html` (date, author, tag links, content); Hugo's own RSS for the home page,
  sections and tags; its default sitemap. Every round checks that Hugo wrote a page
  per item and that sampled pages show their file's date and time. Run as
  `hugo --quiet --source SITE --destination OUT --cacheDir CACHE`.
- **feedsvc**: `.venv/bin/feedsvc build OUT` with `FEEDSVC_ITEMS_DIR`,
  `FEEDSVC_BASE_URL={BASE_URL}`, `FEEDSVC_CACHE_DIR` and `FEEDSVC_TIMEZONE=UTC`, in an
  empty working folder (no feedsvc.toml); its defaults are {PAGE_ITEMS} items per list page
  and {FEED_ITEMS} per feed. It writes a `.gz` beside each file; Hugo does not. The
  package's bytecode is written before the first build, as a wheel's install does.
- **Rounds**: each round runs Hugo cold, `feedsvc build` cold, `feedsvc build` warm,
  then appends one sentence to one item file (the middle one in path order) and runs
  `feedsvc build` into the warm build's folder and Hugo into its cold build's folder;
  the file is restored after the round. Before each build the benchmark flushes what is
  left to write to disk (`sync`: the builds before, the folders it removed), reads the
  build's input files into the page cache (the items, and feedsvc's cache database for a
  warm or edited build; not the rendered documents, which a build only links), and waits
  (up to `--quiet-wait` s) for the rest of the machine to use < {QUIET_LOAD} cores. At
  {LARGE:,} items each cold and warm `feedsvc build` runs between two builds of the same
  case at {GROWTH_BASE:,} items, and the growth targets divide by the mean of those two:
  machine speed drifts by a quarter within one run, and the sizes are otherwise measured
  many minutes apart (the ratio to the {GROWTH_BASE:,}-item median is shown beside it).
- **Time**: wall clock from starting the process until `wait4` returns. "Each run ÷
  Hugo's median" compares with Hugo's cold median for the cold and warm rows, and with
  Hugo's edit median for the edit rows; the targets use Hugo's cold median.
- **Peak memory** (the figure the memory target uses): the larger of (a) the RSS summed
  over the build's process and all its descendants, sampled from `/proc` every
  {SAMPLE_EVERY * 1000:.0f} ms (pages that forked processes share count once per process, so
  with several processes this is an upper bound), and (b) "largest process": `ru_maxrss`
  from `wait4` on the build's process, which is the peak of the largest single process
  in the tree that was waited for (not a sum). "PSS" is the proportional set size
  summed over the same samples, which counts a page shared by forked processes once:
  the closer figure when a build forks workers. "Processes" is the most seen at once.
  MB = 10⁶ bytes, GB = 10⁹ bytes.
- **CPU**: user + system time of the build and the descendants it waited for (`wait4`).
  **Other load**: the rest of the machine's busy time (`/proc/stat`) during the build,
  in cores; well above 0 means the run was disturbed.
- **Files, MB written**: regular files under the output folder after the build (the
  last run), and their bytes. **Files changed** (edit rows): files whose size or
  modification time differs, plus files added or removed, comparing listings taken
  before and after the build; feedsvc's own summary line is beside it.
"""


def write_section(path: Path, section: str) -> None:
    """Replace the section between the markers; without one, put it above `## Notes`
    (the hand-written part benchmarks.run keeps), or at the end."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if SECTION.search(old):
        new = SECTION.sub(lambda _: section, old, count=1)
    else:
        notes = NOTES_HEADING.search(old)
        at = notes.start() if notes else len(old)
        before = old[:at].rstrip("\n")
        new = (before + "\n\n" if before else "") + section + ("\n" + old[at:] if notes else "")
    replace_text(path, new)


# -- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.static_build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    option = parser.add_argument
    option("--sizes", nargs="+", type=sizes, help="corpus sizes (default 1000 10000 100000)")
    option("--rounds", type=int, help="rounds per size (default 3)")
    option("--large-rounds", type=int, default=0,
           help=f"rounds for {LARGE:,} items or more (default: --rounds); a cold build "
                "of 100,000 items takes minutes")  # fmt: skip
    option("--quick", action="store_true", help="a quick check: 1,000 items, 1 round")
    option("--out", type=Path, default=Path("docs/benchmarks.md"), help="the report")
    option("--work-dir", type=Path, default=Path("/tmp/feedsvc-bench"), help="corpora, builds")
    option("--seed", type=int, default=1, help="corpus seed")
    option("--quiet-wait", type=float, default=60, help="max seconds to wait for other load")
    option("--timeout", type=float, default=7200, help="safety limit per build, seconds")
    option("--note", help="a line in bold at the top of the section, e.g. that it is a trial")
    args = parser.parse_args(argv)
    chosen = [n for group in args.sizes or () for n in group] or (
        [1000] if args.quick else [1000, 10_000, 100_000]
    )
    rounds = args.rounds or (1 if args.quick else 3)
    if rounds < 1:
        parser.error("rounds must be positive")
    if not (BIN / "feedsvc").exists():
        parser.error(f"{BIN / 'feedsvc'} not found: run with the project's .venv/bin/python")
    ensure_package("hugo")
    compile_package()
    # `kill <pid>` still restores the edited item: SystemExit runs the `finally` blocks.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    bench = Bench(
        args.work_dir.resolve(), args.seed, rounds, args.timeout, args.quiet_wait,
        args.large_rounds,
    )  # fmt: skip
    bench.work.mkdir(parents=True, exist_ok=True)
    started, code = datetime.now(UTC), code_version()
    arguments = sys.argv[1:] if argv is None else argv
    note = args.note or ("Quick run: 1,000 items, one round." if args.quick else "")
    context = {
        "date": f"{started:%Y-%m-%d %H:%M} UTC",
        "command": shlex.join(["python", "-m", "benchmarks.static_build", *arguments]),
        "hugo": hugo_version(),
        "note": note,
    }
    results: list[SizeResult] = []
    for n in chosen:
        base = Folders(bench.work / str(GROWTH_BASE)) if n >= LARGE else None
        if base is not None:
            ensure_corpus(base, GROWTH_BASE, bench.seed)
        results.append(measure_size(bench, n, base))
        now = code_version()
        context["code"] = code if now == code else f"{code} at the start; {now} at the end"
        context["elapsed"] = f"{(datetime.now(UTC) - started).total_seconds() / 60:.1f} min"
        write_section(args.out, render_section(results, context))
    print(f"wrote the static-build section of {args.out}", file=sys.stderr)
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
