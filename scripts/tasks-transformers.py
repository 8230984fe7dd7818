"""The capability tasks checked item by item against Hugging Face transformers (`just
tasks-check`): for the rows an `fpo eval` of the task files scored, the prompts are rendered
here again, independently of the task files (lm-evaluation-harness's formats written out in
Python), each choice's log-likelihood is computed by transformers on the same GGUF (dequantised
to float32, as the golden fixtures were made), and both are compared: the largest difference of
a log-likelihood, and how many rows get the same acc and acc_norm.

Usage: tasks-transformers.py EVAL_DIR DATA_DIR MODEL.gguf
(EVAL_DIR: the output folder of `fpo eval experiments/tasks/{mmlu,arc_challenge,...}.toml`.)
"""

import copy
import json
import os
import sys

import torch
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer


def rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def mmlu_prompt(doc, dev):
    subject = doc["subject"]
    header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"

    def text(d):
        c = d["choices"]
        return (f"{d['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:")

    shots = [d for d in dev if d["subject"] == subject][:5]
    examples = "".join(text(d) + " " + "ABCD"[d["answer"]] + "\n\n" for d in shots)
    return header + examples + text(doc), [" A", " B", " C", " D"], [doc["answer"]]


def arc_prompt(doc, _):
    return f"Question: {doc['question']}\nAnswer:", [" " + c for c in doc["choices"]], [doc["gold"]]


def hellaswag_prompt(doc, _):
    return doc["query"], [" " + c for c in doc["choices"]], [doc["gold"]]


TASKS = {
    "mmlu": ("mmlu/test.jsonl", mmlu_prompt, "mmlu/dev.jsonl"),
    "arc_challenge": ("arc_challenge/test.jsonl", arc_prompt, None),
    "arc_easy": ("arc_easy/test.jsonl", arc_prompt, None),
    "hellaswag": ("hellaswag/validation.jsonl", hellaswag_prompt, None),
}


def loglikelihoods(model, tok, context, conts):
    ctx = tok(context)["input_ids"]
    out = []
    with torch.inference_mode():
        first = model(torch.tensor([ctx]), use_cache=True)
        for c in conts:
            whole = tok(context + c)["input_ids"]
            ids = whole[len(ctx):] if whole[:len(ctx)] == ctx else tok(c, add_special_tokens=False)["input_ids"]
            logp = torch.log_softmax(first.logits[0, -1].double(), -1)
            total = float(logp[ids[0]])
            if len(ids) > 1:
                r = model(torch.tensor([ids[:-1]]), past_key_values=copy.deepcopy(first.past_key_values))
                lp = torch.log_softmax(r.logits[0].double(), -1)
                total += sum(float(lp[k, t]) for k, t in enumerate(ids[1:]))
            out.append(total)
    return out


def argmax(xs):
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def main():
    eval_dir, data_dir, path = sys.argv[1], sys.argv[2], sys.argv[3]
    torch.set_num_threads(int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count())))
    folder, name = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # transformers builds the tokenizer from the GGUF's metadata with a plain byte-level
    # pre-tokenizer; SmolLM2's own tokenizer.json (and llama.cpp's `smollm` pre-tokenizer, and
    # fpo's) split digits first. Without this, "\n\n3" becomes two tokens here and one in the
    # hub's tokenizer (MMLU rows whose few-shot answer precedes a digit).
    if tok.backend_tokenizer.pre_tokenizer.__class__.__name__ == "ByteLevel":
        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    print("| task | rows | max abs diff of a log-likelihood | same acc | same acc_norm | acc fpo / transformers |")
    print("|---|---|---|---|---|---|")
    for task, (data, prompt, fewshot) in TASKS.items():
        records_path = os.path.join(eval_dir, f"task-{task}.jsonl")
        if not os.path.exists(records_path):
            continue
        docs = rows(os.path.join(data_dir, data))
        dev = rows(os.path.join(data_dir, fewshot)) if fewshot else None
        recs = rows(records_path)
        worst, same, same_norm, acc_a, acc_b = 0.0, 0, 0, 0, 0
        for r in recs:
            context, conts, gold = prompt(docs[r["index"]], dev)
            assert gold == r["gold"], (task, r["index"])
            lls = loglikelihoods(model, tok, context, conts)
            worst = max(worst, max(abs(a - b) for a, b in zip(lls, r["lls"])))
            chars = [len(c) - 1 for c in conts]
            acc = 1.0 if argmax(lls) in gold else 0.0
            norm = 1.0 if argmax([l / n for l, n in zip(lls, chars)]) in gold else 0.0
            same += acc == r["acc"]
            same_norm += norm == r["acc_norm"]
            acc_a += r["acc"]
            acc_b += acc
        n = len(recs)
        print(f"| {task} | {n} | {worst:.2e} | {same}/{n} | {same_norm}/{n} | {acc_a / n:.3f} / {acc_b / n:.3f} |", flush=True)


if __name__ == "__main__":
    main()
