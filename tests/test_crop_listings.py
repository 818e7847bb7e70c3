"""Batch listings: rewritten exactly when an image of the batch changed, never otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from cxrflow.crop_listings import HEADER, listing_text, remove_others, write_if_changed


def test_listing_rows_and_what_changes_them(tmp_path: Path) -> None:
    image = tmp_path / "a b.png"
    image.write_bytes(b"first")
    (tmp_path / "link.png").symlink_to(image)
    rows = [("a", str(image), ""), ("l", str(tmp_path / "link.png"), ""), ("gone", "x/gone.png", "missing file")]
    text = listing_text(rows)
    lines = text.splitlines()
    assert lines[0] + "\n" == HEADER and len(lines) == 4
    assert lines[1].split("\t")[3] == "5" and lines[2].split("\t")[3:] == lines[1].split("\t")[3:]  # through links
    assert lines[3] == "gone\tx/gone.png\tmissing file\t\t\t"  # known problems are not stat'ed
    assert listing_text(rows) == text  # stable while nothing changes
    # New bytes of the same size with the old mtime put back (cp -p, tar): still a change.
    st = image.stat()
    image.write_bytes(b"other")
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert image.stat().st_size == st.st_size and image.stat().st_mtime_ns == st.st_mtime_ns
    assert listing_text(rows) != text
    # Images another rule writes are listed without a stat; tabs cannot break a row.
    assert listing_text([("t", "a\tb.png", "")], stat=False).splitlines()[1] == "t\ta\\tb.png\t\t\t\t"


def test_write_if_changed_keeps_an_unchanged_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "listings" / "src" / "4-1.tsv"
    assert write_if_changed(path, "x\n")
    os.utime(path, ns=(1, 1))
    assert not write_if_changed(path, "x\n") and path.stat().st_mtime_ns == 1  # Snakemake sees no change
    assert write_if_changed(path, "y\n") and path.stat().st_mtime_ns > 1
    (path.parent / "2-0.tsv").write_text("old split")
    remove_others(path.parent, ["4-1.tsv"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["4-1.tsv"]
    remove_others(tmp_path / "absent", [])
