"""Build the CJK web/PDF font the service ships: Noto Sans CJK SC Regular, subset to GB2312 + every
character of the message catalogs + Latin, as WOFF2 under serving/web/static/fonts/.

Why ship a font: a county or township PC without a CJK font shows Chinese text (and Chinese patient
names) as boxes; the page and the printed report must not depend on what the machine has. Why a
subset: the full SC face is ~16 MB; GB2312 (6763 hanzi + symbols) covers everyday names and clinical
words in ~2 MB. A character outside the subset (a rare name character) falls back to the system font.

Source: Debian's fonts-noto-cjk (``apt-get install fonts-noto-cjk``). Run again after adding catalog
strings with characters outside GB2312:

    python scripts/subset_cjk_font.py [--source /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
LICENCE_SOURCE = Path("/usr/share/doc/fonts-noto-cjk/copyright")
OUT_DIR = REPO / "serving" / "web" / "static" / "fonts"
OUT_NAME = "NotoSansSC-preread-subset.woff2"
FACE = "Noto Sans CJK SC"


def gb2312_characters() -> set[str]:
    """Every character GB2312 encodes (rows 0xA1–0xF7, cells 0xA1–0xFE)."""
    found = set()
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                found.add(bytes((high, low)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return found


def catalog_characters() -> set[str]:
    found = set()
    for po in (REPO / "datasets" / "vocabulary" / "locales").rglob("*.po"):
        found |= set(po.read_text(encoding="utf-8"))
    return found


def extra_ranges() -> set[str]:
    """Latin, punctuation, arrows, CJK punctuation, fullwidth forms, degree/µ/± and friends."""
    ranges = [
        (0x20, 0x7E),
        (0xA0, 0x17F),
        (0x2010, 0x206F),
        (0x2190, 0x21FF),
        (0x2212, 0x2265),
        (0x3000, 0x303F),
        (0xFF00, 0xFFEF),
    ]
    return {chr(c) for lo, hi in ranges for c in range(lo, hi + 1)}


def build(source: Path, out_dir: Path) -> Path:
    collection = TTCollection(str(source))
    font = next(f for f in collection.fonts if f["name"].getDebugName(4) == FACE)
    text = "".join(sorted(gb2312_characters() | catalog_characters() | extra_ranges()))
    options = subset.Options()
    options.flavor = "woff2"
    options.layout_features = ["*"]  # keep vertical forms, kerning, locl
    options.name_IDs = ["*"]  # keep the copyright and licence names (OFL 1.1)
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.hinting = False  # CFF hints add size and little on screens today
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / OUT_NAME
    subset.save_font(font, str(out), options)
    if LICENCE_SOURCE.exists():
        shutil.copyfile(LICENCE_SOURCE, out_dir / "NotoSansCJK-copyright.txt")
        (out_dir / "OFL.txt").write_text(ofl_text(LICENCE_SOURCE.read_text(encoding="utf-8")), encoding="utf-8")
    return out


def ofl_text(debian_copyright: str) -> str:
    """The SIL Open Font License 1.1 text from Debian's copyright file (its indented paragraph)."""
    lines = debian_copyright.splitlines()
    start = max(i for i, line in enumerate(lines) if line.strip() == "License: SIL-1.1")
    body = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        body.append("" if line.strip() == "." else line[1:])
    return (
        "Noto Sans CJK: Copyright 2014-2021 Adobe (http://www.adobe.com/), with Reserved Font Name 'Source'.\n\n"
        + "\n".join(body).strip()
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    out = build(args.source, args.out_dir)
    print(f"{out} {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
