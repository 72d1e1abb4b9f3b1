"""A deterministic corpus of item files for the benchmarks, in the format README.md describes.

    python -m benchmarks.corpus OUT_DIR --count N [--seed 1]

writes N files `OUT_DIR/<category>/YYYY-MM-DD-<slug>.md` across eight categories and the
years 2023 and 2024. Each has front matter (title, a date with a time and no timezone,
1-3 tags; sometimes author, summary, image) and a 2-4 KB Markdown body with paragraphs,
a bullet list, absolute and relative links, an image and raw HTML that the sanitiser must
clean. The same seed and count give byte-identical trees: one `random.Random(seed)` draws
everything, in file order, and nothing reads the clock.

`write_one` writes one more item, dated after every corpus item, for the "new file
dropped" measurement.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

CATEGORIES = ("retail", "tech", "finance", "logistics", "travel", "health", "energy", "media")
# Uneven on purpose, as real sites are: the largest category has ~4x the smallest.
CATEGORY_WEIGHTS = (24, 20, 14, 10, 10, 8, 8, 6)
START = datetime(2023, 1, 1)
END = datetime(2025, 1, 1)  # exclusive: the last corpus item is dated 2024-12-31
#: Extra items (`write_one`) are dated from here on, after every corpus item.
EXTRA_START = END
BODY_BYTES = (2048, 4096)

BRANDS = (
    "Alibaba", "Tmall", "Dunhill", "Lazada", "Cainiao", "Ant Group", "Freshippo", "Youku",
    "Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay",
    "Acme", "Stark Industries", "Wayne Logistics", "Tyrell", "Soylent", "Cyberdyne",
    "Oceanic", "Gringotts", "Pied Piper", "Aperture", "Wonka", "Monarch", "Zorg", "Nakatomi",
)  # fmt: skip
VERBS = (
    "opens", "launches", "expands", "acquires", "closes", "tests", "doubles", "unveils",
    "partners on", "invests in", "cuts prices on", "reports record", "rethinks", "pilots",
)  # fmt: skip
ADJECTIVES = (
    "flagship", "regional", "cross-border", "same-day", "luxury", "low-carbon", "mobile",
    "overnight", "subscription", "second-hand", "automated", "rural", "quarterly", "open",
)  # fmt: skip
NOUNS = (
    "store", "warehouse", "payment service", "delivery network", "marketplace", "data centre",
    "loyalty programme", "travel portal", "clinic chain", "solar farm", "newsroom", "app",
    "fleet", "pavilion", "festival", "exchange", "fund", "platform", "studio", "hub",
)  # fmt: skip
PLACES = (
    "Shanghai", "Hangzhou", "Singapore", "Kuala Lumpur", "Berlin", "Lyon", "Madrid",
    "Nairobi", "Lagos", "Austin", "Toronto", "Melbourne", "Osaka", "Seoul", "Dubai", "Lima",
)  # fmt: skip
WORDS = (
    "the", "a", "of", "and", "to", "in", "on", "for", "with", "as", "by", "from", "at",
    "market", "customers", "sales", "growth", "quarter", "shoppers", "brand", "prices",
    "shipping", "orders", "analysts", "percent", "year", "online", "retailers", "said",
    "according", "company", "statement", "launch", "partners", "regional", "demand",
    "merchants", "supply", "chain", "consumers", "platform", "digital", "payments", "data",
    "logistics", "parcels", "stores", "premium", "luxury", "categories", "inventory",
    "returns", "delivery", "service", "announced", "expected", "reported", "compared",
    "previous", "season", "holiday", "festival", "record", "volume", "investment", "new",
    "first", "largest", "smaller", "rural", "cities", "cross-border", "exporters", "traffic",
    "mobile", "users", "monthly", "active", "revenue", "margin", "costs", "energy", "fleet",
    "electric", "vehicles", "warehouses", "automation", "robots", "staff", "hiring",
    "training", "pilot", "programme", "feedback", "survey", "reviews", "ratings", "quality",
    "speed", "week", "month", "today", "earlier", "later", "while", "after", "before",
)  # fmt: skip
TAGS = (
    "tmall", "luxury", "ecommerce", "logistics", "payments", "ai", "cloud", "earnings",
    "mergers", "sustainability", "travel", "health", "energy", "media", "policy", "startups",
    "supply-chain", "mobile", "retail", "funding", "security", "asia", "europe", "africa",
)  # fmt: skip
AUTHORS = (
    "Mei Chen", "Ana Souza", "Tomás Díaz", "Priya Raman", "Jonas Weber", "Aiko Tanaka",
    "Chinedu Okafor", "Léa Martin", "Omar Haddad", "Sara Lindqvist",
)  # fmt: skip
#: Raw HTML every body carries: a sanitiser must drop these or their dangerous parts.
ALWAYS_HAZARDS = (
    "<script>alert(1)</script>",
    '<p>Read <a href="javascript:alert(1)">the full statement</a> for details.</p>',
    (
        '<iframe src="https://player.example.com/embed/{n}" width="560" height="315">'
        "Your reader cannot show this video.</iframe>"
    ),
)
#: Some of these too, at random.
MORE_HAZARDS = (
    '<img src="pixel.gif" onerror="alert(1)" alt="">',
    '<p><a href="javascript:123">Call us</a></p>',  # mozilla/bleach#611
    "<style>p { display: none }</style>",
    '<object data="movie.swf">Flash is no longer supported.</object>',
    '<div onmouseover="steal()">Hover for the figures.</div>',
    "<template><p>never shown</p></template>",
)


@dataclass(frozen=True, slots=True)
class Written:
    """One item file written: where, and the title a feed will show for it."""

    path: Path
    title: str


def slugify(title: str) -> str:
    """The file-name slug of a title: lowercase a-z and 0-9 joined by hyphens, ≤ 60 chars."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug[:60].rstrip("-") or "item"


def _sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 18))
    return " ".join(words).capitalize() + "."


def _title(rng: random.Random) -> str:
    title = (
        f"{rng.choice(BRANDS)} {rng.choice(VERBS)} {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    )
    if rng.random() < 0.6:
        title += f" in {rng.choice(PLACES)}"
    shape = rng.random()
    if shape < 0.1:
        title = f"Update: {title}"  # a colon: the front matter must quote it
    elif shape < 0.15:
        title = f'{title}, "a first"'
    return title


def _body(rng: random.Random, category: str, slug: str, n: int) -> str:
    """Markdown of 2-4 KB: a lead with links, a list, an image, raw HTML, more paragraphs."""
    brand = rng.choice(BRANDS)
    brand_slug = slugify(brand)
    lead = (
        f"**{brand}** {_sentence(rng).lower()} {_sentence(rng)} "
        f"See [{brand}'s announcement](https://www.example.com/{brand_slug}/news/{n}) "
        f'and <span style="color:red" onclick="x()">the figures</span> it published. '
        f"{_sentence(rng)}"
    )
    bullets = "\n".join(f"- {_sentence(rng)}" for _ in range(rng.randint(3, 5)))
    if rng.random() < 0.5:
        image = f"![A photo for {slug}](https://images.bench.example.net/{category}/{n}.jpg)"
    else:
        image = f'![Chart: {brand} orders by month](images/{slug}-chart.png "Orders")'
    related = (
        f"{_sentence(rng)} Earlier coverage is in [our {category} section]"
        f"(/categories/{category}.html); the [raw figures](data/{slug}.csv) and "
        f"[a related story](../{rng.choice(CATEGORIES)}/) are linked here. {_sentence(rng)}"
    )
    hazards = [h.format(n=n) for h in ALWAYS_HAZARDS]
    hazards += rng.sample(MORE_HAZARDS, k=rng.randint(0, 2))
    heading = f"## {rng.choice(NOUNS).capitalize()} outlook"
    fixed = sum(len(block) + 2 for block in (lead, bullets, image, heading, related, *hazards))
    # Filler sentences up to a size drawn in 2-4 KB (the blocks are ASCII: chars = bytes).
    target = rng.randint(BODY_BYTES[0] + 100, BODY_BYTES[1] - 200) - fixed
    filler: list[str] = []
    size = 0
    while size < target:
        filler.append(_sentence(rng))
        size += len(filler[-1]) + 1
    third = max(1, len(filler) // 3)
    first, *more = (" ".join(filler[i : i + third]) for i in range(0, len(filler), third))
    blocks = [lead, bullets, first, image, *hazards[:2], heading, *more[:1], related]
    blocks += [*hazards[2:], *more[1:]]
    return "\n\n".join(blocks) + "\n"


def calibration_bodies(count: int = 40) -> list[tuple[str, str]]:
    """Fixed bodies (Markdown, page URL) of corpus shape, the same in every run and
    version of the corpus seed: the benchmark's yardstick of the machine's speed."""
    rng = random.Random("feedsvc-bench-calibration")
    bodies = []
    for n in range(count):
        category, slug = CATEGORIES[n % len(CATEGORIES)], f"calibration-{n}"
        bodies.append((_body(rng, category, slug, n), f"https://bench.example/items/{slug}"))
    return bodies


def _front_matter(rng: random.Random, title: str, when: datetime) -> str:
    """YAML front matter; strings are written as JSON, which YAML reads as quoted scalars."""
    lines = [f"title: {json.dumps(title)}", f"date: {when:%Y-%m-%d %H:%M}"]
    lines.append(f"tags: {json.dumps(rng.sample(TAGS, k=rng.randint(1, 3)))}")
    if rng.random() < 0.6:
        lines.append(f"author: {json.dumps(rng.choice(AUTHORS), ensure_ascii=False)}")
    if rng.random() < 0.3:
        lines.append(f"summary: {json.dumps(_sentence(rng))}")
    if rng.random() < 0.25:
        lines.append(f"image: https://images.bench.example.net/lead/{rng.randrange(10**6)}.jpg")
    return "---\n" + "\n".join(lines) + "\n---\n"


def _item(rng: random.Random, category: str, slug: str, title: str, when: datetime, n: int) -> str:
    return _front_matter(rng, title, when) + _body(rng, category, slug, n)


def generate(out_dir: Path, count: int, seed: int = 1) -> int:
    """Write `count` item files under `out_dir` (which must be empty or absent); return count."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; remove it or choose another folder")
    rng = random.Random(seed)
    span = int((END - START).total_seconds()) // 60
    for category in CATEGORIES:
        (out_dir / category).mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for n in range(count):
        category = rng.choices(CATEGORIES, weights=CATEGORY_WEIGHTS)[0]
        when = START + timedelta(minutes=rng.randrange(span))
        title = _title(rng)
        name = f"{when:%Y-%m-%d}-{slugify(title)}"
        suffix = 2
        while f"{category}/{name}" in taken:  # slugs are unique per category and date
            name = f"{when:%Y-%m-%d}-{slugify(title)}-{suffix}"
            suffix += 1
        taken.add(f"{category}/{name}")
        text = _item(rng, category, name[11:], title, when, n)
        (out_dir / category / f"{name}.md").write_text(text, encoding="utf-8")
    return count


def write_one(out_dir: Path, n: int, seed: int = 1) -> Written:
    """Write extra item number `n` (from 1), dated after every corpus item and every extra
    item with a smaller `n`; its title names it, so a feed can be checked for it."""
    rng = random.Random(f"feedsvc-bench-extra:{seed}:{n}")
    category = CATEGORIES[n % len(CATEGORIES)]
    when = EXTRA_START + timedelta(minutes=n)
    title = f"Benchmark extra item {n}"
    slug = f"bench-extra-{n}"
    path = out_dir / category / f"{when:%Y-%m-%d}-{slug}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_item(rng, category, slug, title, when, n), encoding="utf-8")
    return Written(path, title)


def extra_files(out_dir: Path) -> list[Path]:
    """The files `write_one` left under `out_dir` (corpus slugs never contain this name)."""
    return sorted(out_dir.glob("*/*-bench-extra-*.md"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.corpus", description=__doc__)
    parser.add_argument("out_dir", type=Path, help="folder to create (must be empty)")
    parser.add_argument("--count", type=int, required=True, help="number of item files")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must be at least 0")
    started = time.perf_counter()
    try:
        written = generate(args.out_dir, args.count, args.seed)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    print(f"wrote {written} item files to {args.out_dir} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
