"""Hugging Face transformers' side of `just bench-model-compare`.

Measures what `cargo bench --bench llm` measures, the same way, on the same GGUF (dequantised to
float32 by transformers, as the golden fixtures were made): prefill tokens/s of the 38-token chat
prompt (best of 5 forwards), decode tokens/s at batch 1 and 8 (64 greedy new tokens, no early
stop, minus a one-token generation), and the process's peak RSS. Prints one JSON line.

Usage: bench-transformers.py THREADS MODEL.gguf
"""

import json
import os
import resource
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPT = "What happens if you eat watermelon seeds?"
NEW_TOKENS = 64


def main() -> None:
    threads, path = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(threads)
    folder, name = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    enc = tok.apply_chat_template(
        [{"role": "user", "content": PROMPT}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    ids = enc["input_ids"]
    assert ids.shape[1] == 38, ids.shape
    with torch.inference_mode():
        model(ids)
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            model(ids)
            best = min(best, time.perf_counter() - t)
        prefill = ids.shape[1] / best

        def generate(batch: int, n: int) -> float:
            inp = ids.repeat(batch, 1)
            t = time.perf_counter()
            out = model.generate(
                inp,
                attention_mask=torch.ones_like(inp),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=tok.eos_token_id,
            )
            assert out.shape[1] == ids.shape[1] + n
            return time.perf_counter() - t

        decode = []
        for batch in (1, 8):
            t_pre = generate(batch, 1)
            dt = generate(batch, NEW_TOKENS) - t_pre
            decode.append(batch * (NEW_TOKENS - 1) / dt)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        json.dumps(
            {
                "engine": f"transformers {__import__('transformers').__version__} / torch {torch.__version__}, f32",
                "threads": threads,
                "prefill": prefill,
                "decode_b1": decode[0],
                "decode_b8": decode[1],
                "rss_gb": rss_gb,
                "kernels": torch.backends.cpu.get_cpu_capability().lower(),
            }
        )
    )


if __name__ == "__main__":
    main()
