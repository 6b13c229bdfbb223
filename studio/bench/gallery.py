"""`python -m studio.bench gallery [--images N] [--json]`: how the gallery scales.

The N rows are synthetic: inserted in bulk straight into the index (the same triggers keep the
full-text index in step) with prompts drawn from a fixed vocabulary and paths to files that do not
exist, because writing 100,000 real PNGs would measure the disk, not the gallery. Real `save()`
calls (small PNGs, fsync and all) are timed separately for the insert rate.

Figures: open + first page cold (a fresh Gallery object, as at application start; the OS file cache
may still be warm), full-text search latency (first page of 200, median and worst over ~100 varied
queries, plus the matching `count` the lazy view needs), save() rate, database size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from studio.bench import report
from studio.gallery import Gallery, Query
from studio.gallery.records import utc_text

PAGE = 200
_SUBJECTS = ("cat dog fox owl horse dragon robot castle lighthouse forest mountain river city street portrait "
             "woman man child knight wizard ship island desert temple garden flower tree bridge tower").split()
_STYLES = ("oil painting watercolor photograph sketch render anime pixel art matte cinematic studio lighting "
           "golden hour foggy night neon dramatic soft pastel vivid moody detailed minimalist baroque").split()



def _pseudo_words(count: int) -> list[str]:
    """A long tail of made-up words (names, styles, artists in real prompts), so some searches are rare."""
    rng = random.Random(7)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["th", "ch", "qu", "x"]
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


_EXTRA = _pseudo_words(3000)


def _prompt(rng: random.Random) -> str:
    words = rng.sample(_SUBJECTS, 2) + rng.sample(_STYLES, 4) + rng.sample(_EXTRA, 3)
    rng.shuffle(words)
    return " ".join(words)


def fill_synthetic(gallery: Gallery, count: int, seed: int = 0) -> None:
    """Bulk-insert `count` synthetic rows (no image files) in batches of one transaction each."""
    rng = random.Random(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    models = ["studio-shapes", "sd15", "dreamshaper", "realistic"]
    sql = ("INSERT INTO images (path, width, height, created_at, model_name, model_hash, mode, prompt, "
           "negative_prompt, seed, steps, cfg, scheduler, favorite, recipe_json) "
           "VALUES (?, 512, 512, ?, ?, '0123456789', 'txt2img', ?, 'blurry, low quality', ?, 20, 7.0, 'Euler a', "
           "?, '{}')")
    done = 0
    while done < count:
        batch = []
        for i in range(done, min(count, done + 10_000)):
            created = utc_text(start + dt.timedelta(seconds=i * 37))
            batch.append((f"images/synthetic/{i}.png", created, rng.choice(models), _prompt(rng),
                          rng.randrange(2**32), int(rng.random() < 0.05)))
        with gallery.transaction() as conn:
            conn.executemany(sql, batch)
        done += len(batch)


def _timed(fn: Any) -> tuple[float, Any]:
    begin = time.perf_counter()
    value = fn()
    return time.perf_counter() - begin, value


def measure(count: int, saves: int, queries: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="studio-bench-gallery-") as tmp:
        root = Path(tmp)
        with Gallery(root) as gallery:
            build_s, _ = _timed(lambda: fill_synthetic(gallery, count))
            rows: dict[str, Any] = {"images": count, "synthetic_fill_s": round(build_s, 3)}
        rows.update(_open_and_page(root))
        with Gallery(root) as gallery:
            rows.update(_search(gallery, queries))
            rows.update(_saves(gallery, saves))
        rows["db_size_mb"] = round(sum(p.stat().st_size for p in root.glob("gallery.sqlite3*")) / 2**20, 2)
        return rows


def _open_and_page(root: Path) -> dict[str, Any]:
    def first_page() -> int:
        with Gallery(root) as gallery:
            total = gallery.count()
            page = gallery.find(offset=0, limit=PAGE)
            assert len(page) == min(PAGE, total)
            return total

    cold_s, _ = _timed(first_page)
    warm = [_timed(first_page)[0] for _ in range(5)]
    return {"open_first_page_cold_s": round(cold_s, 4), "open_first_page_warm_s": round(statistics.median(warm), 4)}


def _search(gallery: Gallery, queries: int) -> dict[str, Any]:
    rng = random.Random(1)
    vocab = _SUBJECTS + _STYLES + rng.sample(_EXTRA, 50)
    texts = []
    for i in range(queries):
        kind = i % 4  # single words, two words, a prefix being typed, a rare long-tail word
        if kind == 0:
            texts.append(rng.choice(vocab))
        elif kind == 1:
            texts.append(f"{rng.choice(_SUBJECTS)} {rng.choice(_STYLES)}")
        elif kind == 2:
            word = rng.choice(vocab)
            texts.append(word[: max(2, len(word) // 2)])
        else:
            texts.append(rng.choice(_EXTRA))
    page_s, count_s = [], []
    for text in texts:
        query = Query(search=text)
        page_s.append(_timed(lambda q=query: gallery.find(q, limit=PAGE))[0])
        count_s.append(_timed(lambda q=query: gallery.count(q))[0])
    return {"search_queries": len(texts),
            "search_page_median_s": round(statistics.median(page_s), 5), "search_page_max_s": round(max(page_s), 5),
            "search_count_median_s": round(statistics.median(count_s), 5), "search_count_max_s": round(max(count_s), 5)}


def _saves(gallery: Gallery, saves: int) -> dict[str, Any]:
    rng = random.Random(2)
    images = [Image.new("RGB", (64, 64), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
              for _ in range(saves)]
    recipe = {"schema": 1, "prompt": "a small benchmark square", "negative_prompt": "", "steps": 20, "cfg": 7.0,
              "scheduler": "Euler", "model": {"name": "bench", "hash": "0123456789", "path": ""}}
    elapsed, _ = _timed(lambda: [gallery.save(img, {**recipe, "seed": i}) for i, img in enumerate(images)])
    return {"save_count": saves, "save_per_s": round(saves / elapsed, 1)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.bench gallery", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="synthetic rows (default 100000)")
    parser.add_argument("--saves", type=int, default=50, help="real save() calls timed (default 50)")
    parser.add_argument("--queries", type=int, default=100, help="search queries timed (default 100)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args(argv)
    rows = measure(args.images, args.saves, args.queries)
    report(f"Gallery ({args.images} synthetic rows)", rows, args.json)
    return 0
