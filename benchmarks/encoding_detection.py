"""``encoding: auto`` measured: files of real sentences, written in UTF-8, Windows-1252,
Latin-1 and UTF-16, read back by three detectors; a file counts as right when the text read
equals the text written.

    python benchmarks/encoding_detection.py

Contenders, side by side on the same files:
* ``attnkit`` — :func:`attnkit.data.encodings.detect_encoding` (BOM, UTF-8, then
  charset-normalizer with the Windows-1252 / Latin-1 rule);
* ``charset-normalizer`` — its best match alone;
* ``utf-8, else latin-1`` — the common fallback in data-loading scripts.

Sentences: Financial PhraseBank (UTF-8 copy), Multi30k German, SST-2 and MovieLens titles
(``u.item``, Latin-1), only those with a non-ASCII letter; half of the files get the
typography a Windows export has (curly quotes, en dashes), which only Windows-1252 and the
Unicode encodings can hold. Target: attnkit right on ≥ 99% of files of every encoding.
Results: ``benchmarks/results/encodings.json``. Needs ../shared/data."""
from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row, write_results

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
ENCODINGS = ("utf-8", "cp1252", "latin-1", "utf-16")
FILES_PER_CASE = 40
SIZES = (3, 30)  # lines per file: a tiny file and a small one


def sentences() -> dict[str, list[str]]:
    """Non-ASCII sentences of each source."""
    fpb = [ln.rsplit("\t", 1)[0] for ln in (DATA / "financial_phrasebank/Sentences_50Agree.tsv")
           .read_text(encoding="utf-8").splitlines()[1:]]
    de = (DATA / "multi30k/train.de").read_text(encoding="utf-8").splitlines()
    sst = [ln.rsplit("\t", 1)[0].strip() for ln in (DATA / "sst2/train.tsv").read_text(encoding="utf-8")
           .splitlines()[1:]]
    titles = [ln.split("|")[1] for ln in (DATA / "movielens/ml-100k/u.item").read_text(encoding="latin-1")
              .splitlines()]
    out = {"financial_phrasebank": fpb, "multi30k_de": de, "sst2": sst, "movielens_titles": titles}
    return {k: [s for s in v if any(ord(c) > 127 for c in s) and "\t" not in s] for k, v in out.items()}


def windows_typography(text: str) -> str:
    """Curly quotes and an en dash, as a word processor or a Windows export writes them."""
    return text.replace(" - ", " \u2013 ").replace("'", "\u2019").replace('"', "\u201c")


def attnkit_detect(path: Path) -> str:
    from attnkit.data.encodings import _cache, detect_encoding

    _cache.clear()
    return detect_encoding(path).encoding


def normalizer_detect(path: Path) -> str | None:
    import charset_normalizer

    best = charset_normalizer.from_bytes(path.read_bytes()).best()
    return best.encoding if best is not None else None


def fallback_detect(path: Path) -> str:
    try:
        path.read_bytes().decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


CONTENDERS = {"attnkit": attnkit_detect, "charset-normalizer": normalizer_detect, "utf-8, else latin-1": fallback_detect}


def read_as(path: Path, encoding: str | None) -> str | None:
    if encoding is None:
        return None
    try:
        return path.read_bytes().decode(encoding).removeprefix("\ufeff")
    except (UnicodeDecodeError, LookupError):
        return None


def main() -> None:
    """Write files, detect, compare; print and save the rates."""
    if not DATA.is_dir():
        sys.exit(f"needs {DATA}")
    rng = random.Random(0)
    pools = sentences()
    right = {(c, e): 0 for c in CONTENDERS for e in ENCODINGS}
    total = dict.fromkeys(ENCODINGS, 0)
    wrong_examples: dict[tuple, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for encoding in ENCODINGS:
            for source, pool in pools.items():
                for size in SIZES:
                    for i in range(FILES_PER_CASE):
                        lines = rng.sample(pool, min(size, len(pool)))
                        if i % 2 and encoding != "latin-1":
                            lines = [windows_typography(s) for s in lines]
                        text = "\n".join(lines) + "\n"
                        try:
                            data = text.encode(encoding)
                        except UnicodeEncodeError:
                            continue  # a sentence this encoding cannot hold
                        path = Path(tmp) / f"{encoding}-{source}-{size}-{i}.txt"
                        path.write_bytes(data)
                        total[encoding] += 1
                        for name, detect in CONTENDERS.items():
                            found = detect(path)
                            if read_as(path, found) == text:
                                right[(name, encoding)] += 1
                            else:
                                wrong_examples.setdefault((name, encoding), f"{source}, {size} lines: read as {found}")
    rows = []
    for encoding in ENCODINGS:
        for name in CONTENDERS:
            rate = round(right[(name, encoding)] / max(total[encoding], 1), 4)
            target = 0.99 if name == "attnkit" else None
            rows.append(row(f"{encoding}/{name}", "files_read_right", rate, target=target, better="higher",
                            files=total[encoding], first_wrong=wrong_examples.get((name, encoding))))
            print(f"{encoding:8s} {name:22s} {rate:.3f} of {total[encoding]} files", flush=True)
    notes = [f"{FILES_PER_CASE} files per source, encoding and size ({SIZES} lines); sources: {', '.join(pools)}",
             "right = the decoded text equals the text written; Latin-1 files hold no Windows typography"]
    print(write_results("encodings", rows, notes))


if __name__ == "__main__":
    main()
