# Faults: a write that fails (full disk, `ulimit -f`) is fatal with a clear
# message and leaves the files written before intact; a reader that exits
# early stops the writers quietly.
. "$(dirname "$0")/lib.sh"
M=$ROOT/data/models
caps=$T/caps.tsv
i=0; while [ $i -lt 64 ]; do printf 'k%d\ta dog barks %d times\n' $i $i; i=$((i + 1)); done > "$caps"
"$BIN/clap-text" -q -m "$M/clap-test.safetensors" < "$caps" > "$T/text.mp"
tiny="--layers 1 --heads 2 --width 16 --positions 32 --bs 8 --seed 1"
"$BIN/prefixdec" train -q $tiny --epochs 1 -o "$T/dec.st" "$T/text.mp" 2> "$T/train.err" || fail "first checkpoint" "$(cat "$T/train.err")"
cp "$T/dec.st" "$T/dec.before"
# the next checkpoint cannot be written: 64 KB file size limit
( ulimit -f 64; "$BIN/prefixdec" train -q --bs 8 --seed 1 --epochs 2 --init "$T/dec.st" -o "$T/dec.st" "$T/text.mp" ) 2> "$T/limit.err"; rc=$?
if [ $rc -eq 2 ] && grep -q "^prefixdec: error: .*File too large" "$T/limit.err"; then
  ok "prefixdec train over ulimit -f: exit 2 with a clear message"
else fail "prefixdec train over ulimit -f" "rc=$rc $(cat "$T/limit.err")"; fi
if cmp -s "$T/dec.st" "$T/dec.before" && "$BIN/prefixdec" decode -q -m "$T/dec.st" < "$T/text.mp" > /dev/null; then
  ok "prefixdec train over ulimit -f: the previous checkpoint is intact and loads"
else fail "previous checkpoint intact"; fi
ls "$T"/dec.st.tmp* > /dev/null 2>&1 && fail "no temporary file left behind" || ok "no temporary file left behind"
# gapshift plot: the old picture survives a failed write
"$BIN/gapshift" plot -q --audio "$T/text.mp" --text "$T/text.mp" -o "$T/p.svg"
cp "$T/p.svg" "$T/p.before"
( ulimit -f 8; "$BIN/gapshift" plot -q --audio "$T/text.mp" --text "$T/text.mp" --noise 0.1 -o "$T/p.svg" ) 2> "$T/plot.err"; rc=$?
if [ $rc -eq 2 ] && grep -q "File too large" "$T/plot.err" && cmp -s "$T/p.svg" "$T/p.before"; then
  ok "gapshift plot over ulimit -f: exit 2, the previous picture intact"
else fail "gapshift plot over ulimit -f" "rc=$rc $(cat "$T/plot.err")"; fi
# full disk for every stream writer
for t in "clap-text -q -m $M/clap-test.safetensors" "nnproj -q -M $M/memory-test.mp --method pd" "gapshift apply -q" "wsac-cat -q"; do
  in=$caps; case $t in clap-text*) ;; *) in=$T/text.mp ;; esac
  $BIN/$t < "$in" > /dev/full 2> "$T/full.err"; rc=$?
  name=${t%% *}
  if [ $rc -eq 2 ] && grep -q "^$name: error: writing output: No space left on device" "$T/full.err"; then
    ok "$name to a full disk: exit 2, 'No space left on device'"
  else fail "$name to a full disk" "rc=$rc $(head -3 "$T/full.err")"; fi
done
"$BIN/prefixdec" decode -q -m "$M/decoder-test.safetensors" < "$T/text.mp" > /dev/full 2> "$T/full.err"; rc=$?
[ $rc -eq 2 ] && grep -q "No space left on device" "$T/full.err" && ok "prefixdec decode to a full disk: exit 2" ||
  fail "prefixdec decode to a full disk" "rc=$rc $(head -3 "$T/full.err")"
# a reader that stops early: the writers end quietly
"$BIN/clap-text" -m "$M/clap-test.safetensors" < "$caps" 2> "$T/p1.err" | "$BIN/nnproj" -M "$M/memory-test.mp" --method pd 2> "$T/p2.err" | head -c 10 > /dev/null
if ! grep -v "records written" "$T/p1.err" "$T/p2.err" | grep -q .; then ok "| head: upstream tools stop without error messages"
else fail "| head: quiet" "$(cat "$T/p1.err" "$T/p2.err")"; fi
finish
