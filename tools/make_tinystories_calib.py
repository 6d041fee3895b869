"""Build tests/fixtures/tinystories-calib.jsonl: calibration text for the stories260K demo model.

Source: ../shared/data/tinystories/validation-head.txt (TinyStories validation split, CDLA-Sharing-1.0).
Its first 334 non-blank lines are stories260K/eval.txt, so they are skipped (no overlap with the
evaluation text). The following paragraphs are grouped in order into records of at least 800
characters (about 390 stories260K tokens), joined with blank lines, until 160 records exist.
Run: python3 tools/make_tinystories_calib.py ../shared/data/tinystories/validation-head.txt
"""
import json
import sys

src = sys.argv[1]
paras = [line.strip() for line in open(src, encoding="utf-8") if line.strip()]
paras = paras[334:]
records, cur = [], []
for p in paras:
    cur.append(p)
    if sum(len(x) for x in cur) >= 800:
        records.append("\n\n".join(cur))
        cur = []
    if len(records) == 160:
        break
with open("tests/fixtures/tinystories-calib.jsonl", "w", encoding="utf-8") as f:
    for r in records:
        f.write(json.dumps({"text": r}) + "\n")
print(len(records), "records", sum(len(r) for r in records), "chars")
