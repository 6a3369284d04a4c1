#!/usr/bin/env python3
"""The reference's own Unicode behaviour, probed code point by code point, as a C table and goldens.

The BERT tokenizer of sentence-transformers is Hugging Face `tokenizers` (Rust), whose
BertNormalizer and BertPreTokenizer classify characters with their own, older Unicode tables
(control / punctuation / nonspacing-mark categories, NFD), while lowercasing uses Rust's char
tables. This script asks the reference itself, for every code point U+0000..U+10FFFF except the
surrogates, what each step does to it, and writes what vlm4rec needs to do the same:

  src/text/tokenizer_unicode_tables.h            range tables (generated; do not edit)
  tests/data/tokenizer-unicode/corpus.jsonl      texts with recently assigned characters
  tests/data/tokenizer-unicode/tokens.bert-base-uncased.jsonl
                                                 the reference's ids (full and truncated to 256) and tokens
  tests/data/tokenizer-unicode/digest.txt        per block of 4096 code points, a hash of the
                                                 reference's pre-tokens of "a" + ch + "b"
  tests/data/tokenizer-unicode/provenance.json   package versions, table sizes, and how many code
                                                 points utf8proc alone would treat differently

Usage (the environment of scripts/pyenv.sh, or any with tokenizers==0.23.3):
  PY=$(scripts/pyenv.sh)
  $PY tests/reference/tokenizer_unicode.py [--vocab ../shared/fixtures/vocab/bert-base-uncased.txt]
                                           [--utf8proc libutf8proc.so.2]
--utf8proc names the shared library the comparison counts in provenance.json are made against
(read with ctypes; "" skips the comparison). tests/test_tokenizer.c checks vlm4rec against the
digest and the goldens; it needs no Python.
"""
import argparse
import ctypes
import json
import os
import sys
import time

import tokenizers
from tokenizers import normalizers, pre_tokenizers
from tokenizers.implementations import BertWordPieceTokenizer

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer-unicode")
TABLES = os.path.join(ROOT, "src", "text", "tokenizer_unicode_tables.h")
BLOCK = 4096

# Texts with characters assigned in recent Unicode versions (and some old ones for contrast).
TEXTS = [
    "Arabic end of text mark \u061d between words, and a\u061db glued",
    "melting face \U0001fae0 emoji and shaking face \U0001fae8 with a pink heart \U0001fa77",
    "hamsa\U0001faacand\U0001fae0glued emoji",
    "CJK: \u4e2d\u6587 ext B \U00020000 ext C \U0002b739 ext G \U00030000 ext H \U00031350 ext I \U0002ebf0 new URO \u9ffc\u9fff",
    "new punctuation \u2e53\u2e54 tilde\u2e5ddash \u2e43 \u2e4f and Balinese \u1b7d\u1b7e, Telugu \u0c77 \u0c84",
    "Devanagari ext A \U00011b00 \U00011b09 and Kawi \U00011f43\U00011f4f glued x\U00011f44y",
    "Canadian syllabics \u166d chi sign and Sharada \U000111c9 sandhi mark a\u166db",
    "recent marks: cafe\u07fd, e\u1ac1, o\u1dfa, \u0898word, x\U0001e08fy and an old one e\u0301",
    "Arabic pound mark above \u0890100 and piastre \u0891 5, Kaithi \U000110cd 3",
    "Egyptian format controls \U00013430\U00013431 and \U00013439\U0001343f glued a\U00013436b",
    "new case pairs \u1c89\u1c8a \ua7cb \ua7cc \ua7da \U00010d50\U00010d70 \U00016ea0 \u2c2f \ua7c0 \U00010570",
    "Dives Akuru \U00011938 \U00011935\U00011930 and Hangul \ud55c\uad6d\uc5b4 \u1100\u1161",
    "Greek \u0386\u0388\u0389 \u1f82 and Turkish \u0130stanbul, Vietnamese Ti\u1ebfng Vi\u1ec7t",
    "Zero width joiner family \U0001f468\u200d\U0001f469\u200d\U0001f467 and ZWSP a\u200bb, soft hyphen co\u00adop",
    "Stylish leather handbag \U0001fae0 with gold-tone hardware \u2e5d perfect for evenings \u061d Brand: \u1c89ORA",
    "This running shoe (size 42\u2e53) features a breathable mesh upper\u0898 and a cushioned sole \U0001fa77; "
    "ideal for daily training \U00031350 or casual wear.",
    "Ceramic tea set \u2014 6 cups, \u4e2d\u56fd design \U0002ebf0 with \u0c77 motif; dishwasher safe\U0001fae8",
    "Kids' backpack \U0001faac\U0001faad\U0001faae in blue \u2e4f green, water\u2011resistant, 15\u2033 laptop sleeve \u0891",
    "Minimalist wall clock\u2e5c silent quartz movement\u1b7e 30\u202fcm diameter \U00011f45 matte black frame",
    "Organic cotton T\u2011shirt \u2013 unisex fit \u061d pre-shrunk, \u1dfaavailable in S/M/L/XL " * 12,
]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", default=os.path.join(ROOT, "..", "shared", "fixtures", "vocab", "bert-base-uncased.txt"))
    ap.add_argument("--utf8proc", default="libutf8proc.so.2")
    return ap.parse_args()


def code_points():
    return [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def probe(cps):
    """Per code point: what clean_text, handle_chinese_chars, strip_accents, lowercase, NFD and the
    pre-tokenizer do to it, each step asked on its own."""
    B = normalizers.BertNormalizer
    clean = B(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    cjk = B(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    strip = B(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    lower = B(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    nfd = normalizers.NFD()
    pre = pre_tokenizers.BertPreTokenizer()
    out = {k: set() for k in ("removed", "space", "whitespace", "punct", "chinese", "nonspacing", "decomposes", "ccc")}
    lowers = {}
    for cp in cps:
        ch = chr(cp)
        s = "a" + ch + "b"
        c = clean.normalize_str(s)
        if c == "ab":
            out["removed"].add(cp)
        elif c == "a b":
            out["space"].add(cp)
        elif c != s:
            sys.exit(f"U+{cp:04X}: clean_text made {c!r} of {s!r}")
        k = cjk.normalize_str(s)
        if k == "a " + ch + " b":
            out["chinese"].add(cp)
        elif k != s:
            sys.exit(f"U+{cp:04X}: handle_chinese_chars made {k!r}")
        pieces = [w for w, _ in pre.pre_tokenize_str(s)]
        if pieces == ["a", "b"]:
            out["whitespace"].add(cp)
        elif pieces == ["a", ch, "b"]:
            out["punct"].add(cp)
        elif pieces != [s]:
            sys.exit(f"U+{cp:04X}: the pre-tokenizer made {pieces!r}")
        d = nfd.normalize_str(ch)
        if d != ch:
            out["decomposes"].add(cp)
        elif nfd.normalize_str("a" + ch + "\u0334") == "a\u0334" + ch or nfd.normalize_str("a\u0345" + ch) == "a" + ch + "\u0345":
            out["ccc"].add(cp)  # a nonzero combining class: canonical ordering moves it
        if strip.normalize_str(ch) == "":
            out["nonspacing"].add(cp)  # (with the marks that decompose into nonspacing marks)
        lo = lower.normalize_str(ch)
        if lo != ch:
            lowers[cp] = lo
    if out["space"] != out["whitespace"] - out["removed"]:
        sys.exit("clean_text's white space is not the pre-tokenizer's (less what it removes)")
    # strip_accents must be NFD without the nonspacing marks found above
    for cp in cps:
        want = "".join(x for x in nfd.normalize_str(chr(cp)) if ord(x) not in out["nonspacing"])
        if strip.normalize_str(chr(cp)) != want:
            sys.exit(f"U+{cp:04X}: strip_accents is not NFD minus the nonspacing marks")
    return out, lowers


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def lower_runs(lowers):
    """Single-code-point mappings as runs {first, last, delta, step}: cp = first + k * step -> cp + delta."""
    runs = []
    for cp in sorted(lowers):
        lo = lowers[cp]
        if cp == 0x130:
            if lo != "i\u0307":
                sys.exit("U+0130 no longer lowercases to i U+0307")
            continue  # the one multi-code-point mapping, handled in the code
        if len(lo) != 1:
            sys.exit(f"U+{cp:04X} lowercases to {len(lo)} code points")
        delta = ord(lo) - cp
        if runs and runs[-1][2] == delta and cp - runs[-1][1] in (1, 2) and runs[-1][3] in (0, cp - runs[-1][1]):
            runs[-1][3] = cp - runs[-1][1]
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, delta, 0])
    return [[a, b, d, s or 1] for a, b, d, s in runs]


def c_ranges(name, what, rs):
    lines = [f"/* {what}: {sum(b - a + 1 for a, b in rs)} code points */",
             f"static const v4r_uc_range {name}[] = {{"]
    row = ""
    for a, b in rs:
        cell = f"{{0x{a:X}, 0x{b:X}}}, "
        if len(row) + len(cell) > 110:
            lines.append("    " + row.rstrip())
            row = ""
        row += cell
    if row:
        lines.append("    " + row.rstrip())
    lines.append("};")
    return "\n".join(lines) + "\n"


def write_tables(sets, runs, versions):
    head = f"""/* Generated by tests/reference/tokenizer_unicode.py from the reference tokenizer's own behaviour
 * (tokenizers {versions['tokenizers']}): do not edit; regenerate with
 *   $(scripts/pyenv.sh) tests/reference/tokenizer_unicode.py
 * Sorted, disjoint ranges of code points; tokenizer_unicode.c searches them. */
"""
    body = [head,
            c_ranges("ref_removed", "clean_text removes (control, format, private use; not \\t \\n \\r)", ranges(sets["removed"])),
            c_ranges("ref_whitespace", "white space (clean_text turns it into a space; the pre-tokenizer splits)", ranges(sets["whitespace"])),
            c_ranges("ref_punct", "punctuation: the pre-tokenizer isolates it", ranges(sets["punct"])),
            c_ranges("ref_chinese", "handle_chinese_chars puts spaces around it", ranges(sets["chinese"])),
            c_ranges("ref_nonspacing", "nonspacing marks: strip_accents drops them after NFD", ranges(sets["nonspacing"])),
            c_ranges("ref_decomposes", "NFD changes it (the decomposition itself is utf8proc's)", ranges(sets["decomposes"])),
            c_ranges("ref_ccc", "a nonzero canonical combining class (its value is utf8proc's)", ranges(sets["ccc"]))]
    lines = [f"/* lowercase: cp = first + k * step in [first, last] becomes cp + delta "
             f"({sum((b - a) // s + 1 for a, b, d, s in runs)} code points; U+0130 is in the code) */",
             "static const v4r_uc_lower_run ref_lower[] = {"]
    for a, b, d, s in runs:
        lines.append(f"    {{0x{a:X}, 0x{b:X}, {d}, {s}}},")
    lines.append("};")
    body.append("\n".join(lines) + "\n")
    tmp = TABLES + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(body))
    os.replace(tmp, TABLES)


def fnv(h, data):
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def digest(cps, tok):
    """Per block of BLOCK code points: FNV-1a 64 over each code point's pre-tokens of the fully
    normalized "a" + ch + "b" (pieces joined by 0x1F, each code point ended by 0x1E)."""
    norm, pre = tok.normalizer, tok.pre_tokenizer
    blocks = {}
    for cp in cps:
        s = norm.normalize_str("a" + chr(cp) + "b")
        pieces = [w for w, _ in pre.pre_tokenize_str(s)]
        blk = cp // BLOCK
        blocks[blk] = fnv(blocks.get(blk, 0xCBF29CE484222325), ("\x1f".join(pieces) + "\x1e").encode("utf-8"))
    return blocks


def utf8proc_differences(lib, cps, sets, lowers):
    """How many code points utf8proc's categories and case map alone classify otherwise."""
    u = ctypes.CDLL(lib)
    u.utf8proc_category.restype = ctypes.c_int
    u.utf8proc_tolower.restype = ctypes.c_int32
    u.utf8proc_version.restype = ctypes.c_char_p
    u.utf8proc_unicode_version.restype = ctypes.c_char_p
    CC, CF, CO, MN = 26, 27, 29, 6
    ZS, ZL, ZP, PC, PO = 23, 24, 25, 12, 18
    diff = {"removed": [], "punct": [], "nonspacing": [], "lowercase": []}
    for cp in cps:
        cat = u.utf8proc_category(cp)
        if cp < 0x80:
            continue  # ASCII is handled in the code, identically
        removed = cp == 0xFFFD or cat in (CC, CF, CO)
        if removed != (cp in sets["removed"]):
            diff["removed"].append(cp)
        elif not removed and cat not in (ZS, ZL, ZP) and cp != 0x85 and (PC <= cat <= PO) != (cp in sets["punct"]):
            diff["punct"].append(cp)
        if (cat == MN) != (cp in sets["nonspacing"]):
            diff["nonspacing"].append(cp)
        lo = lowers.get(cp, chr(cp))
        if len(lo) == 1 and u.utf8proc_tolower(cp) != ord(lo):
            diff["lowercase"].append(cp)
    changed = set().union(*diff.values())
    return {"utf8proc": u.utf8proc_version().decode(), "unicode": u.utf8proc_unicode_version().decode(),
            "code_points_treated_otherwise": len(changed),
            "by_step": {k: {"count": len(v), "ranges": [f"U+{a:04X}..U+{b:04X}" if a != b else f"U+{a:04X}"
                                                      for a, b in ranges(v)]} for k, v in diff.items()}}


def write_json_lines(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=True) + "\n")
    os.replace(tmp, path)


def main():
    args = parse_args()
    t0 = time.time()
    cps = code_points()
    sets, lowers = probe(cps)
    runs = lower_runs(lowers)
    tok = BertWordPieceTokenizer(args.vocab, clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                 lowercase=True)  # all-MiniLM-L6-v2's tokenizer.json settings
    tok256 = BertWordPieceTokenizer(args.vocab, clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                    lowercase=True)
    tok256.enable_truncation(256)
    import transformers
    versions = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
                "python": sys.version.split()[0]}
    write_tables(sets, runs, versions)
    os.makedirs(DATA, exist_ok=True)
    write_json_lines(os.path.join(DATA, "corpus.jsonl"), [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    rows = []
    for i, t in enumerate(TEXTS):
        e = tok.encode(t)
        rows.append({"id": i, "ids": e.ids, "ids_256": tok256.encode(t).ids, "tokens": e.tokens})
    write_json_lines(os.path.join(DATA, "tokens.bert-base-uncased.jsonl"), rows)
    blocks = digest(cps, tok)
    tmp = os.path.join(DATA, "digest.txt.tmp")
    with open(tmp, "w") as f:
        f.write(f"# block of {BLOCK} code points, FNV-1a 64 of the reference's pre-tokens of \"a\" + ch + \"b\" "
                "(tests/reference/tokenizer_unicode.py)\n")
        for blk in sorted(blocks):
            f.write(f"{blk * BLOCK:06X} {blocks[blk]:016x}\n")
    os.replace(tmp, os.path.join(DATA, "digest.txt"))
    prov = {"made_by": "tests/reference/tokenizer_unicode.py", "versions": versions,
            "vocab": os.path.basename(args.vocab), "code_points_probed": len(cps),
            "tables": {k: {"code_points": len(v), "ranges": len(ranges(v))} for k, v in sets.items()},
            "lowercase": {"code_points": len(lowers), "runs": len(runs)}}
    if args.utf8proc:
        prov["against_utf8proc"] = utf8proc_differences(args.utf8proc, cps, sets, lowers)
    with open(os.path.join(DATA, "provenance.json.tmp"), "w") as f:
        json.dump(prov, f, indent=1)
        f.write("\n")
    os.replace(os.path.join(DATA, "provenance.json.tmp"), os.path.join(DATA, "provenance.json"))
    print(f"{len(cps)} code points probed in {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
