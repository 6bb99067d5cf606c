#!/usr/bin/python3
"""Regenerate the seed corpora of tests/fuzz/corpus/NAME/ (deterministic).

    /usr/bin/python3 tests/fuzz/make_corpus.py [WAV2MEL]

WAV2MEL (default bin/wav2mel) makes the real streams. Needs Debian's
python3-numpy, python3-soundfile and python3-msgpack. Every seed is small:
the whole corpus stays under 200 KB (one stream seed is ~67 KB on purpose,
so the reader's buffer has to grow past its first 64 KiB).
"""
import io
import json
import os
import struct
import subprocess
import sys
import tempfile

import msgpack
import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import sttools  # noqa: E402
import wsacstream  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")
WAV2MEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "bin", "wav2mel")


def put(name, fname, data):
    d = os.path.join(CORPUS, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def tone(sr, seconds, channels=1, freq=440.0):
    t = np.arange(int(round(sr * seconds))) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * np.sin(2 * np.pi * 3 * freq * t)
    if channels > 1:
        x = np.stack([x * (1 - 0.3 * c) for c in range(channels)], axis=1)
    return x.astype(np.float32)


def audio_bytes(x, sr, fmt, subtype):
    b = io.BytesIO()
    sf.write(b, x, sr, format=fmt, subtype=subtype)
    return b.getvalue()


# ------------------------------------------------------------------ audio
AUDIO = {
    "pcm16-mono-32k.wav": (tone(32000, 0.03), 32000, "WAV", "PCM_16"),
    "pcm16-stereo-8k.wav": (tone(8000, 0.08, 2), 8000, "WAV", "PCM_16"),
    "float-mono-16k.wav": (tone(16000, 0.04), 16000, "WAV", "FLOAT"),
    "u8-mono-22k.wav": (tone(22050, 0.03), 22050, "WAV", "PCM_U8"),
    "pcm24-3ch-48k.wav": (tone(48000, 0.012, 3), 48000, "WAV", "PCM_24"),
    "mono-44k.flac": (tone(44100, 0.05), 44100, "FLAC", "PCM_16"),
    "stereo-32k.aiff": (tone(32000, 0.02, 2), 32000, "AIFF", "PCM_16"),
    "ulaw-8k.au": (tone(8000, 0.07), 8000, "AU", "ULAW"),
    "mono-16k.ogg": (tone(16000, 0.05), 16000, "OGG", "VORBIS"),
}
for fname, (x, sr, fmt, sub) in AUDIO.items():
    put("audio", fname, audio_bytes(x, sr, fmt, sub))

# ------------------------------------------------------------------ streams
with tempfile.TemporaryDirectory() as tmp:
    short = os.path.join(tmp, "short.wav")
    stereo = os.path.join(tmp, "stereo.flac")
    sf.write(short, tone(32000, 0.03), 32000, subtype="PCM_16")
    sf.write(stereo, tone(8000, 0.08, 2), 8000, subtype="PCM_16")
    put("stream", "wav2mel-two.mp", subprocess.run([WAV2MEL, "-q", "-j", "1", short, stereo], check=True,
                                                   stdout=subprocess.PIPE).stdout)
    longw = os.path.join(tmp, "long.wav")
    sf.write(longw, tone(32000, 2.6), 32000, subtype="PCM_16")
    put("stream", "wav2mel-over-64k.mp", subprocess.run([WAV2MEL, "-q", "-j", "1", longw], check=True,
                                                        stdout=subprocess.PIPE).stdout)
    # a file that fails: its key is in the trailer
    bad = os.path.join(tmp, "tooshort.wav")
    sf.write(bad, tone(32000, 0.001), 32000, subtype="PCM_16")
    put("stream", "wav2mel-failed.mp", subprocess.run([WAV2MEL, "-q", "-j", "1", bad, short], stdout=subprocess.PIPE).stdout)


def stream(records, tool="fuzz-seed", params=None, trailer=True, errors=0, failed=()):
    b = io.BytesIO()
    wsacstream.write_stream(b, tool, records, params=params, trailer=trailer, errors=errors, failed=failed)
    return b.getvalue()


rng = np.random.default_rng(6)
kinds = [{
    "key": "all-kinds",
    "emb": rng.standard_normal(8).astype(np.float32),
    "ids": np.array([101, 2023, 102], np.int32),
    "f64": np.array([[1.5, -2.0]], np.float64),
    "i8": np.array([-1, 2], np.int8),
    "u8": np.array([255], np.uint8),
    "i16": np.array([[-300], [300]], np.int16),
    "i64": np.array([2**40], np.int64),
    "scalar": np.array(3.25, np.float32),
    "empty": np.zeros((0, 3), np.float32),
    "text": "a dog barks \u00e9\u4e2d",
    "n": 42, "neg": -7, "big": 2**64 - 1, "x": 0.25, "yes": True, "no": False, "none": None,
    "list": [1, "two", [3.0]], "map": {"a": 1, "b": {"c": None}},
}]
put("stream", "all-kinds.mp", stream(kinds, params={"sr": 32000, "n_mels": 64, "fmin": 50.0, "w": "hann"},
                                      errors=2, failed=["gone#1", "gone#2"]))
seg = stream([{"key": "a", "emb": np.ones(4, np.float32)}]) + stream([{"key": "b", "emb": np.zeros(4, np.float32)}])
put("stream", "two-segments.mp", seg)
put("stream", "header-only.mp", stream([]))
put("stream", "no-trailer.mp", stream([{"key": "k", "emb": np.ones(2, np.float32)}], trailer=False))
# well-framed but invalid records: the reader names them, the stream goes on
hdr = msgpack.packb(wsacstream.header("fuzz-seed"), use_bin_type=True)
bad_recs = [
    {"key": "", "v": 1},
    {"key": "mismatch", "t": {"dtype": "f32", "shape": [3], "data": b"\0" * 8}},
    {"key": "dtype", "t": {"dtype": "f16", "shape": [1], "data": b"\0\0"}},
    {"key": "tab\tkey"},
    {"no-key": 1},
]
body = b"".join(msgpack.packb(r, use_bin_type=True) for r in bad_recs)
tr = msgpack.packb({"end": True, "records": len(bad_recs), "errors": 0, "failed": []}, use_bin_type=True)
put("stream", "bad-records.mp", hdr + body + tr)

# ------------------------------------------------------------------ safetensors
with tempfile.TemporaryDirectory() as tmp:
    p = os.path.join(tmp, "a.st")
    sttools.save(p, {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.array([1, 2, 3, 4], np.int32),
        "u": np.array([1, 2, 3, 4, 5], np.uint8),
        "h": np.array([1.0, -2.0], np.float16),
        "s": np.array(7, np.int64),
        "e": np.zeros((0, 4), np.float64),
    }, metadata={"wsac.format": "1", "wsac.model": "clap", "n": "-12", "bad": "+3"})
    put("safetensors", "padded.safetensors", open(p, "rb").read())


def st_raw(header, data):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


# unpadded header: data misaligned, tensors copied on lookup
put("safetensors", "unpadded.safetensors", st_raw({
    "__metadata__": {"k": "v"},
    "x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
    "y": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [12, 16]},
    "z": {"dtype": "BOOL", "shape": [2], "data_offsets": [16, 18]},
    "i": {"dtype": "I16", "shape": [1], "data_offsets": [18, 20]},
    "j": {"dtype": "I8", "shape": [], "data_offsets": [20, 21]},
    "d": {"dtype": "F64", "shape": [1], "data_offsets": [21, 29]},
}, bytes(range(29))))
put("safetensors", "empty-header.safetensors", st_raw({}, b""))

# ------------------------------------------------------------------ text
CAPTIONS = [
    "A dog barks while cars pass by.",
    "Rain falls on a tin roof, and thunder rumbles in the distance...",
    "Someone's typing -- fast -- on a keyboard (loudly).",
    "\u00c9l\u00e8ve na\u00efve caf\u00e9 \u2014 \u00ab quotes \u00bb",
    "\u4e2d\u6587\u5b57\u5e55 and \u65e5\u672c\u8a9e",
    "[CLS] a[MASK]b [SEP] [UNK] [PAD]",
    "\u0130stanbul \u039f\u0394\u039f\u03a3 \u1e9e",
    "emoji \U0001F600 zero\u200bwidth \u00a0nbsp\ttab",
    "x" * 120,
    "He said ``hi'' & left; it's 3:45 p.m. on Jan. 5, 2023 -- $4.50 (50%)!",
    "Mr. Smith went to Washington D.C. A. The U.S.A. e.g. etc.",
    "call 555-1234 or (555) 123-4567, visit http://example.com/a?b=c or mail a@b.org :-)",
    "can't won't gonna wanna I'm you're they've y'all o'clock",
    "1/2 3\u00bd 1,000,000 -3.5e10 #hash @user &amp; &lt;tag&gt;",
]
put("wordpiece", "captions.txt", "\n".join(CAPTIONS))
for i, c in enumerate(CAPTIONS[:10]):
    put("wordpiece", "caption-%02d.txt" % i, c)
put("wordpiece", "controls.bin", b"a\x00b\x01c\x7f\xc2\x85d\xef\xbf\xbde\xe2\x80\xa8f\r\ng")
put("ptb", "corpus.bin", "\0".join(CAPTIONS))
for i, c in enumerate(CAPTIONS[9:], 9):
    put("ptb", "caption-%02d.txt" % i, c)
put("ptb", "lines.bin", "A sentence ends with Mr.\0The next one starts.\0\0'quoted' \"double\" ...\0-- --- ----")

put("captions", "lines.tsv", "clip1.wav\tA dog barks.\nclip2.wav\tRain on a roof.\r\n\nno tab here\n\tempty key\n")
put("captions", "bom-lines.tsv", "\ufeffk1\tfirst\nk2\tsecond with\ttab\n")
put("captions", "clotho.csv",
    'file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n'
    'a.wav,one,two,"three, with comma","four ""quoted""","five\nlines"\n'
    'b.wav,x,y,z,w,v\n'
    ',no,file,name,at,all\n'
    'short,row\n')
put("captions", "audiocaps.csv",
    'audiocap_id,youtube_id,start_time,caption\r\n'
    '91139,r1nicOVtvkQ,130,A woman talks nearby as water pours\r\n'
    '58146,UDGBjjwyaqE,20,"Multiple clanging and clanking sounds"\r\n'
    '11,ab,1,"unterminated')
put("captions", "clotho.json",
    json.dumps(["caption_1", "caption_2", "caption_3", "caption_4", "caption_5", "A dog barks.",
                "Caf\u00e9 \"quoted\"\nnewline", "A dog barks.", 3, None, "x\u0000y", "", "caption"]))
put("captions", "audiocaps-official.json", json.dumps(["youtube_id", "r1nicOVtvkQ"]))
put("captions", "nested.json", '\ufeff[["a"], {"b": "c"}, "caption_10", "caption_0", "\\ud83d\\ude00 emoji"]')

put("refs", "clotho.csv",
    'file_name,caption_1,caption_2,caption_3\n'
    'a.wav,one,"two, quoted",\n'
    'b.wav,,,\n'
    'a.wav,duplicate,x,y\n'
    ',empty,key,\n')
put("refs", "audiocaps.csv",
    'audiocap_id,youtube_id,start_time,caption\n'
    '1,yt1,0,first\n2,yt2,10,second\n3,yt1,0,third for yt1\n4,yt3,5,\n')
put("refs", "refs.json", json.dumps({"a.wav": ["one", "two"], "b.wav": ["three"], "c": [], "d": [1], "": ["x"]}))
put("refs", "metrics-dev.json", json.dumps({"k1": {"references": ["a cat", "a kitten"], "candidate": "a cat"},
                                            "k2": {"references": ["rain"]}}))
put("refs", "cands.tsv", "a.wav\ta dog barks\nb.wav\train\na.wav\tduplicate\nno tab\n\tempty\n")

# ------------------------------------------------------------------ tag-train --labels (+ "%%" and --classes)
put("labels", "world.jsonl",
    '{"file_name": "a.wav", "background": {"cls": "rain"}, "events": [{"cls": "dog", "onset": 1.5}, {"cls": " dog "}, '
    '{"cls": 3}]}\n'
    '{"file_name": "b.wav", "events": []}\r\n\n# comment\n{"file_name": "a.wav", "background": {"cls": "wind"}}\n'
    '{"file_name": ""}\n{"no": 1}\n{bad json\n{"file_name": "c\\u00e9.wav", "background": "rain", "events": {"cls": "x"}}\n')
put("labels", "tsv.tsv", "a.wav\tdog, cat ,dog\nb.wav\t\n\tdog\nno tab\n# c\r\na.wav\tbird\r\nc.wav\tx,,y\t z\n\n")
put("labels", "tsv-classes.tsv", "a\tdog,cat\nb\tcow\nc\t#x\n%%\ndog\n  cat  \r\n#comment\n\ncow\ndog\n")
put("labels", "jsonl-classes.jsonl", '{"file_name":"k","events":[{"cls":"Speech"},{"cls":"Music"}]}\n%%\nMusic\nSpeech\nDog\n')
put("labels", "nul.tsv", b"a\tdog\nb\0\tcat\nc\tco\0w\n%%\ndog\nca\0t\n")

# ------------------------------------------------------------------ clap-train --audio-list
put("audiolist", "lines.txt", "data/a.wav\nb\t/x/y/b.flac\r\n\n/abs/dir/\nrel/c.wav\r\r\n./\n/\nk\tpath\twith tab\n")
put("audiolist", "dup-basename.txt", "a.wav\nother/a.wav\n")
put("audiolist", "dup-key.txt", "k\ta.wav\nk\tb.wav\n")
put("audiolist", "empty-key.txt", "\ta.wav\n")
put("audiolist", "empty-path.txt", "k\t\n")
put("audiolist", "nul.txt", b"a.wav\nb\0.wav\n")
put("audiolist", "blank.txt", "\n\r\n\n")
