"""Writes a tiny Llama model with random weights next to a tokenizer, so a real vLLM can serve
it without downloading anything: config.json and model.safetensors sized to the tokenizer in
DIR (written by `make-test-tokenizer DIR`). Its output is noise; only the tokens and the KV
cache matter here (prefix caching, KV-cache events). With LORA_DIR, also a LoRA adapter of
rank 8 for it (random too), written there with peft.

    python tiny_model.py DIR [LORA_DIR]
"""

import json
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main(d: str, lora_dir: str | None) -> None:
    tok = json.load(open(f"{d}/tokenizer.json"))
    added = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    ids = list(tok["model"]["vocab"].values()) + list(added.values())
    vocab = (max(ids) + 1 + 63) // 64 * 64
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=added.get("<|begin_of_text|>"),
        eos_token_id=added.get("<|end_of_text|>"),
        tie_word_embeddings=True,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(d, safe_serialization=True)
    if lora_dir:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(model, lora).save_pretrained(lora_dir, safe_serialization=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
