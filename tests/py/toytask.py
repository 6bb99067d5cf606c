"""A toy captioned task the training tests learn (test_clap_train_new,
test_mpi): 32 clips = 8 sounds (two mel bands each, 30 dB up) x 4 places (a
quarter of the clip 15 dB louder), two captions a clip naming both; and the
small CNN14-BERT sizes (`clap-train --new`) that learn it in seconds."""
import numpy as np

import wsacstream as ws

N_MELS = 16
SOUNDS = "dog cat bird car train rain wind bell".split()
PLACES = ["in the park", "on the street", "near the river", "inside a house"]
SIZES = ["--audio-channels", "8,16,32", "--n-mels", N_MELS, "--embed", 32, "--text-layers", 2, "--text-width", 32,
         "--text-heads", 4, "--text-ffn", 64, "--text-max-pos", 32, "--text-max-len", 16]


def write(mel_path, captions_path, frames, seed):
    """The task's mel stream and KEY<TAB>caption file; frames a multiple of 4.
    Returns the number of clips."""
    rng = np.random.default_rng(seed)
    clips, items, q4 = {}, [], frames // 4
    for s, sw in enumerate(SOUNDS):
        for q, pw in enumerate(PLACES):
            k = "c%d_%d.wav" % (s, q)
            mel = rng.normal(-60, 3, (frames, N_MELS)).astype(np.float32)
            mel[:, 2 * s:2 * s + 2] += 30
            mel[q * q4:(q + 1) * q4, :] += 15
            clips[k] = mel
            items += [(k, "a %s %s" % (sw, pw)), (k, "%s the %s sound" % (pw, sw))]
    with open(mel_path, "wb") as f:
        ws.write_stream(f, "test", ({"key": k, "mel": v} for k, v in clips.items()))
    with open(captions_path, "w") as f:
        f.writelines("%s\t%s\n" % it for it in items)
    return len(clips)
