"""The ACE-Step 5 Hz LM in "understand" mode: audio codes in, a <think> block and lyrics out.

The LM is a plain Qwen3 causal LM (transformers' own class, no remote code) whose tokenizer has one
added token per audio code (`<|audio_code_0|>` ... `<|audio_code_63999|>`). The prompt is its chat
template with the understanding instruction as the system message and the codes as the user
message, then the generation prompt (ACESTEP.md §5). Its context is 4096 tokens: the codes get what
the template and the answer budget leave, so a long track is described from its beginning only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from state.label.options import CODES_PER_SECOND, LM_CONTEXT

SYSTEM_PROMPT = ("# Instruction\nUnderstand the given musical conditions and describe the audio semantics "
                 "accordingly:\n\n")


@dataclass
class LM:
    model: torch.nn.Module
    tokenizer: object
    context: int       # tokens: prompt + codes + answer
    overhead: int      # tokens of the prompt without any code


def _code_token_id(tokenizer, code: int) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(f"<|audio_code_{code}|>")
    return None if tid is None or tid == tokenizer.unk_token_id else tid


def build_prompt(tokenizer, codes: str) -> str:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": codes}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def load_lm(folder: Path, device: torch.device, dtype: torch.dtype, codebook_size: int) -> LM:
    """Load the LM and check that its vocabulary covers every code the audio tokenizer can emit."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.chat_template is None:
        raise ValueError(f"The tokenizer in {folder} has no chat template; the 5 Hz LM's tokenizer has one.")
    for code in (0, codebook_size - 1):
        if _code_token_id(tokenizer, code) is None:
            raise ValueError(f"The tokenizer in {folder} has no <|audio_code_{code}|> token: this is not an "
                             f"ACE-Step 5 Hz LM for a {codebook_size}-code audio tokenizer.")
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).to(device).eval()
    context = min(LM_CONTEXT, int(getattr(model.config, "max_position_embeddings", LM_CONTEXT) or LM_CONTEXT))
    overhead = len(tokenizer(build_prompt(tokenizer, ""), add_special_tokens=False).input_ids)
    return LM(model, tokenizer, context, overhead)


def code_budget(lm: LM, max_new_tokens: int) -> int:
    """How many codes fit beside the prompt and the answer."""
    return max(0, lm.context - lm.overhead - max_new_tokens)


def seconds_budget(lm: LM, max_new_tokens: int) -> float:
    return code_budget(lm, max_new_tokens) / CODES_PER_SECOND


@torch.no_grad()
def understand(lm: LM, codes: list[int], max_new_tokens: int, temperature: float, top_p: float,
               seed: int, stop_at_think_end: bool) -> str:
    """The LM's raw answer (special tokens kept, so the parser sees <think> and the end marker)."""
    from trainer.label.codes import codes_text

    codes = codes[: code_budget(lm, max_new_tokens)]
    tok = lm.tokenizer
    enc = tok(build_prompt(tok, codes_text(codes)), add_special_tokens=False, return_tensors="pt")
    if enc.input_ids.shape[1] != lm.overhead + len(codes):
        raise ValueError("The LM's tokenizer split the audio-code tokens; it is not an ACE-Step 5 Hz LM tokenizer.")
    device = next(lm.model.parameters()).device
    kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id or tok.eos_token_id)
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
    else:
        kwargs.update(do_sample=False)
    if stop_at_think_end:  # labels only: the lyrics after </think> would be generated for nothing
        kwargs.update(stop_strings=["</think>"], tokenizer=tok)
    torch.manual_seed(seed)
    out = lm.model.generate(input_ids=enc.input_ids.to(device), attention_mask=enc.attention_mask.to(device), **kwargs)
    return tok.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=False)
