"""Nothing reported saved is ever lost: a writer process is SIGKILLed at random points, repeatedly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from studio.gallery import Gallery

# Saves in a loop and prints each id only after save() returned, as the CLI and the GUI report it.
WRITER = """
import sys
from PIL import Image
from studio.gallery import Gallery
gallery = Gallery(sys.argv[1])
print("ready", flush=True)
i = int(sys.argv[2])
while True:
    image_id = gallery.save(Image.new("RGB", (32, 32), (i % 256, 40, 90)),
                            {"prompt": f"durable image {i}", "negative_prompt": "", "seed": i, "steps": 4})
    print(image_id, flush=True)
    i += 1
"""


def test_killed_writer_loses_nothing(data_dir: Path) -> None:
    rng = random.Random(1234)
    reported: set[int] = set()
    Gallery(data_dir).close()  # create the schema once, so rounds measure saves, not setup
    deadline = time.monotonic() + 20
    rounds = 0
    while rounds < 15 and time.monotonic() < deadline:
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(data_dir), str(rounds * 1000)],
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(rng.randrange(0, 6)):
            reported.add(int(proc.stdout.readline()))
        # Not synchronisation: a random pause moves the kill to a random point inside a save
        # (temp file written, renamed, row inserted, commit...).
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        tail, _ = proc.communicate(timeout=10)
        reported.update(int(line) for line in tail.split())  # printed before the kill landed
        assert proc.returncode == -signal.SIGKILL
        rounds += 1
    assert rounds >= 5 and reported

    with Gallery(data_dir) as gallery:
        conn = gallery._conn()
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        report = gallery.reconcile(temp_grace_s=0)
        print(f"rounds {rounds}, reported {len(reported)}, re-imported {report.imported}, temp {report.temp_removed}")
        assert report.errors == [] and report.missing == 0
        rows = {r.id: r for r in gallery.find(limit=100_000)}
        for image_id in reported:
            assert image_id in rows, f"image {image_id} was reported saved but is gone"
            assert rows[image_id].file.is_file() and not rows[image_id].missing
        assert all(r.file.is_file() for r in rows.values())  # no row points at a missing file
        on_disk = {p.relative_to(data_dir).as_posix() for p in gallery.images_dir.rglob("*.png")}
        assert on_disk == {r.path for r in rows.values()}  # and no file without a row
        assert not list(gallery.images_dir.rglob(".tmp-*"))
        for record in rows.values():
            assert record.recipe()["prompt"] == record.prompt  # rows from re-imported files are whole
