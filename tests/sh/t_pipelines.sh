# End to end through real shell pipes with the bundled test models: audio
# files -> captions -> a metrics table; caching; sharding equals one process.
. "$(dirname "$0")/lib.sh"
P=$ROOT/pipelines
M=$ROOT/data/models
export WSAC_BIN="$BIN"
# a tiny Clotho-style evaluation set: 4 clips and their captions
mkdir -p "$T/audio"
$PY - "$T/audio" "$T/refs.csv" <<'PY'
import sys, numpy as np, soundfile as sf
sys.path.insert(0, "tests/py")
import signals
names = ["dog bark.wav", "rain, heavy.wav", "bell.wav", "chirp.wav"]
for i, (n, s) in enumerate(zip(names, ["noise", "brown", "tones", "chirp"])):
    sf.write(sys.argv[1] + "/" + n, np.float32(signals.make(s, 32000, 2.0 + i, seed=i)), 32000)
with open(sys.argv[2], "w") as f:
    f.write("file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n")
    for n in names:
        f.write('"%s",a dog barks,rain falls on a roof,a bell rings twice,a bird chirps,"someone walks, slowly"\n' % n)
PY
out=$T/eval
"$P/evaluate" -c "$M/clap-test.safetensors" -d "$M/decoder-test.safetensors" -a "$T/audio" -r "$T/refs.csv" \
  -M "$M/memory-test.mp" -o "$out" > "$T/table1" 2> "$T/err1"; rc=$?
if [ $rc -eq 0 ] && head -n 1 "$T/table1" | grep -q "^metric	ad	nnd	pd$" && grep -q "^cider	" "$T/table1" &&
   grep -q "^meteor	n/a	n/a	n/a$" "$T/table1" && grep -q "^items	4	4	4$" "$T/table1"; then
  ok "evaluate: audio dir + caption CSV -> a table with ad, nnd and pd side by side"
else fail "evaluate: table" "rc=$rc $(cat "$T/table1" "$T/err1" | head -20)"; fi
[ "$(grep -c '' "$out/captions-pd.tsv")" -eq 4 ] && ok "evaluate: a caption per clip" || fail "evaluate: a caption per clip"
"$P/evaluate" -c "$M/clap-test.safetensors" -d "$M/decoder-test.safetensors" -a "$T/audio" -r "$T/refs.csv" \
  -M "$M/memory-test.mp" -o "$out" > "$T/table2" 2> "$T/err2"
if grep -q "reusing $out/audio.mp" "$T/err2" && cmp -s "$T/table1" "$T/table2"; then
  ok "evaluate: a second run reuses the cached embeddings and gives identical numbers"
else fail "evaluate: cache" "$(cat "$T/err2")"; fi
# sharding: xargs -P and GNU parallel give the single-process stream
ls "$T"/audio/* > "$T/list"
"$BIN/wav2mel" -q --threads 1 < "$T/list" | "$BIN/clap-audio" -q --threads 1 -m "$M/clap-test.safetensors" > "$T/one.mp"
"$P/shard" -j 3 sh -c "wav2mel -q --threads 1 | clap-audio -q --threads 1 -m '$M/clap-test.safetensors'" < "$T/list" > "$T/xargs.mp"
check "shard (xargs -P 3): merged output equals one process" "$BIN/wsac-cmp" -q "$T/one.mp" "$T/xargs.mp"
if command -v parallel > /dev/null; then
  "$P/shard" -j 2 -S 2/: sh -c "wav2mel -q --threads 1 | clap-audio -q --threads 1 -m '$M/clap-test.safetensors'" < "$T/list" > "$T/par.mp"
  check "shard (GNU parallel -S 2/:): merged output equals one process" "$BIN/wsac-cmp" -q "$T/one.mp" "$T/par.mp"
  if ssh -o BatchMode=yes -o ConnectTimeout=3 localhost true 2>/dev/null; then
    "$P/shard" -j 2 -S localhost sh -c "PATH=$BIN:\$PATH; wav2mel -q --threads 1 | clap-audio -q --threads 1 -m '$M/clap-test.safetensors'" \
      < "$T/list" > "$T/ssh.mp"
    check "shard over ssh localhost: merged output equals one process" "$BIN/wsac-cmp" -q "$T/one.mp" "$T/ssh.mp"
  else
    echo "# ssh localhost not available: the --sshlogin path was run with GNU parallel's local login ':' only"
  fi
else
  fail "GNU parallel installed (scripts/install-deps.sh)"
fi
# caption pipeline, every method, -j 2, and the cache
for m in ad nnd pd; do
  "$P/caption" -c "$M/clap-test.safetensors" -d "$M/decoder-test.safetensors" -m $m -M "$M/memory-test.mp" -j 2 \
    "$T"/audio/* > "$T/cap-$m.tsv" 2> "$T/cap.err"
  n=$(grep -c '	' "$T/cap-$m.tsv")
  [ "$n" -eq 4 ] && ok "caption -m $m -j 2: KEY<TAB>CAPTION per file" || fail "caption -m $m" "$n lines; $(cat "$T/cap.err")"
done
cmp -s "$T/cap-pd.tsv" "$out/captions-pd.tsv" && ok "caption -j 2 pd equals evaluate's pd captions" ||
  fail "caption equals evaluate" "$(diff "$T/cap-pd.tsv" "$out/captions-pd.tsv" | head)"
# retrieval
"$P/retrieval" -c "$M/clap-test.safetensors" -a "$T/audio" -r "$T/refs.csv" -o "$T/ret" --format json > "$T/ret.json" 2> "$T/ret.err"
grep -q '"t2a"' "$T/ret.json" && ok "retrieval: R@k and mAP@10 both ways" || fail "retrieval" "$(cat "$T/ret.json" "$T/ret.err" | head)"
# train-decoder: one short epoch of a tiny decoder on the CSV
"$P/train-decoder" -c "$M/clap-test.safetensors" -o "$T/dec.safetensors" --noise 0.001 --cache "$T/train" \
  -- --epochs 1 --bs 4 --layers 1 --heads 2 --width 16 --positions 32 -q "$T/refs.csv" > /dev/null 2> "$T/train.err"
if [ -f "$T/dec.safetensors" ] && "$BIN/prefixdec" decode -q -m "$T/dec.safetensors" < "$T/one.mp" | grep -q '	'; then
  ok "train-decoder: CSV -> a decoder that decodes"
else fail "train-decoder" "$(tail -5 "$T/train.err")"; fi
# bad input through the pipes: a broken clip is named, the rest still captioned
printf 'not audio\n' > "$T/audio/broken.wav"
"$P/caption" -c "$M/clap-test.safetensors" -d "$M/decoder-test.safetensors" -m ad "$T"/audio/* > "$T/cap-bad.tsv" 2> "$T/bad.err"
if [ "$(grep -c '	' "$T/cap-bad.tsv")" -eq 4 ] && grep -q "broken.wav" "$T/bad.err"; then
  ok "caption: a file that is not audio is named, the others are captioned"
else fail "caption with a broken file" "$(cat "$T/bad.err")"; fi
finish
