#!/usr/bin/env python3
"""Makes tests/data/spm: two small SentencePiece-style tokenizers (llama.cpp's "llama" vocab kind)
learned from ../shared/data/calib.txt, in the two tokenizer.json forms HF writes for them.

  bpe/      tokenizer.json: model.type BPE, byte_fallback true, Llama-2 layout (normalizer
            Prepend("▁") + Replace(" ", "▁"), <unk> <s> </s>, <0x00>..<0xFF>, then pieces),
            plus tokenizer_config.json (add_bos_token true, add_eos_token false).
  unigram/  tokenizer.json: model.type Unigram (vocab [[piece, log-prob]]), byte_fallback true,
            Metaspace pre-tokenizer with prepend_scheme "first", same pieces, plus
            tokenizer_config.json.

Both carry two control tokens ([INST], [/INST]) and three user-defined tokens (<tool>, ```,
"<sep>") as added tokens at the end of the vocab. Pieces are learned by plain BPE over
whitespace-prefixed words ("▁word"), characters seen fewer than MIN_CHAR times are left to byte
fallback (as SentencePiece's character_coverage does), newline and tab are never pieces.

Deterministic (no randomness, ties broken by piece text). Standard library only.
Usage: scripts/make_spm_fixture.py [--calib ../shared/data/calib.txt] [--out tests/data/spm]
"""
import argparse
import collections
import json
import math
import os
import re

SP = "\u2581"
N_MERGES = 3000
MIN_CHAR = 20
TRAIN_BYTES = 700_000


def train(text):
    words = collections.Counter()
    for line in text.split("\n"):
        line = line.replace("\t", " ")
        for w in re.findall(SP + "?[^" + SP + "]+|" + SP + "+", SP + line.replace(" ", SP)):
            words[w] += 1
    chars = collections.Counter()
    for w, c in words.items():
        for ch in w:
            chars[ch] += c
    alphabet = sorted((ch for ch, c in chars.items() if c >= MIN_CHAR), key=lambda ch: (-chars[ch], ch))
    keep = set(alphabet)
    # Words as symbol lists; characters outside the alphabet split words (they go to bytes).
    seqs, counts = [], []
    for w, c in words.items():
        cur = []
        for ch in w:
            if ch in keep:
                cur.append(ch)
            elif cur:
                seqs.append(cur), counts.append(c)
                cur = []
        if cur:
            seqs.append(cur), counts.append(c)
    pair_count = collections.Counter()
    where = collections.defaultdict(set)
    for i, s in enumerate(seqs):
        for a, b in zip(s, s[1:]):
            pair_count[(a, b)] += counts[i]
            where[(a, b)].add(i)
    merges, piece_freq = [], {}
    vocab = set(alphabet)
    while len(merges) < N_MERGES and pair_count:
        (a, b), c = max(pair_count.items(), key=lambda kv: (kv[1], kv[0]))
        if c < 2:
            break
        # Pieces may not contain "▁" after their first character (SentencePiece's whitespace rule).
        if SP in b and (a + b).strip(SP):
            del pair_count[(a, b)]
            continue
        merges.append((a, b))
        new = a + b
        vocab.add(new)
        piece_freq[new] = c
        for i in list(where.pop((a, b), ())):
            s = seqs[i]
            for x, y in zip(s, s[1:]):
                pair_count[(x, y)] -= counts[i]
                if pair_count[(x, y)] <= 0:
                    del pair_count[(x, y)]
                where[(x, y)].discard(i)
            out, k = [], 0
            while k < len(s):
                if k + 1 < len(s) and s[k] == a and s[k + 1] == b:
                    out.append(new)
                    k += 2
                else:
                    out.append(s[k])
                    k += 1
            seqs[i] = out
            for x, y in zip(out, out[1:]):
                pair_count[(x, y)] += counts[i]
                where[(x, y)].add(i)
    return alphabet, chars, merges, piece_freq


def main():
    ap = argparse.ArgumentParser()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--calib", default=os.path.join(repo, "..", "shared", "data", "calib.txt"))
    ap.add_argument("--out", default=os.path.join(repo, "tests", "data", "spm"))
    args = ap.parse_args()
    with open(args.calib, "rb") as f:
        text = f.read(TRAIN_BYTES).decode("utf-8", errors="ignore")
    alphabet, chars, merges, piece_freq = train(text)

    specials = ["<unk>", "<s>", "</s>"]
    pieces = specials + ["<0x%02X>" % b for b in range(256)]
    merged = [a + b for a, b in merges]
    pieces += merged + [ch for ch in alphabet if ch not in set(merged)]
    control = ["[INST]", "[/INST]"]
    user = ["<tool>", "```", "<sep>"]
    added = control + user
    all_pieces = pieces + added
    assert len(set(all_pieces)) == len(all_pieces)

    added_tokens = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                     "normalized": False, "special": True} for i, t in enumerate(specials)]
    for t in added:
        added_tokens.append({"id": all_pieces.index(t), "content": t, "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": t in control})

    decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": SP}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    bpe = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SP}, {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": {p: i for i, p in enumerate(pieces)},
                  "merges": [[a, b] for a, b in merges]},
    }
    # Unigram: log-probabilities from the learned pieces' pair counts (merged pieces) and the
    # character counts (single characters); special and byte pieces score 0 as SentencePiece's.
    freq = {p: piece_freq.get(p, chars.get(p, 1)) for p in pieces[len(specials) + 256:]}
    total = float(sum(freq.values()))
    uni_vocab = [[p, 0.0] for p in pieces[:len(specials) + 256]]
    uni_vocab += [[p, round(math.log(freq[p] / total), 6)] for p in pieces[len(specials) + 256:]]
    uni_vocab += [[t, 0.0] for t in added]
    unigram = dict(bpe)
    unigram["normalizer"] = None
    unigram["pre_tokenizer"] = {"type": "Metaspace", "replacement": SP, "prepend_scheme": "first", "split": False}
    unigram["decoder"] = {"type": "Metaspace", "replacement": SP, "prepend_scheme": "first", "split": False}
    unigram["model"] = {"type": "Unigram", "unk_id": 0, "vocab": uni_vocab, "byte_fallback": True}

    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
              "unk_token": "<unk>", "pad_token": None, "legacy": False, "model_max_length": 4096,
              "tokenizer_class": "LlamaTokenizer", "clean_up_tokenization_spaces": False}
    for name, tj in (("bpe", bpe), ("unigram", unigram)):
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False, indent=1)
            f.write("\n")
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)
            f.write("\n")
    print(f"{len(all_pieces)} tokens ({len(merges)} merges, {len(alphabet)} characters) -> {args.out}")


if __name__ == "__main__":
    main()
