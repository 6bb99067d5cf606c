# Every tool: --help, usage errors, man page, stderr prefix, exit statuses;
# make install; write failures and closed pipes.
. "$(dirname "$0")/lib.sh"

tools=$(ls "$BIN")
[ -n "$tools" ] || fail "tools built" "no tools in $BIN"
for t in $tools; do
  out="$T/$t.out"; err="$T/$t.err"
  "$BIN/$t" --help > "$out" 2> "$err"; rc=$?
  if [ $rc -eq 0 ] && grep -q "^Usage: $t" "$out" && [ ! -s "$err" ]; then ok "$t --help: usage on stdout, exit 0"
  else fail "$t --help: usage on stdout, exit 0" "rc=$rc $(head -c 200 "$err")"; fi
  "$BIN/$t" -h > "$out.h" 2>/dev/null
  if cmp -s "$out" "$out.h"; then ok "$t -h equals --help"; else fail "$t -h equals --help"; fi
  "$BIN/$t" --no-such-option > "$out" 2> "$err" < /dev/null; rc=$?
  if [ $rc -eq 1 ] && [ ! -s "$out" ] && grep -q "^$t: unrecognized option '--no-such-option'" "$err"; then
    ok "$t: unknown option -> exit 1, named on stderr with the tool prefix"
  else fail "$t: unknown option -> exit 1, named on stderr with the tool prefix" "rc=$rc $(cat "$err")"; fi
  man="$ROOT/man/man1/$t.1"
  if [ -f "$man" ]; then
    warn=$(groff -man -Tutf8 -ww -z "$man" 2>&1)
    if [ -z "$warn" ]; then ok "$t: man page renders without warnings"; else fail "$t: man page renders without warnings" "$warn"; fi
    for sec in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS"; do
      grep -q "^\.SH \"*$sec" "$man" || fail "$t: man page has $sec" ; done
    # every long option in --help is documented in the man page
    missing=""
    for o in $("$BIN/$t" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
      sed 's/\\//g' "$man" | grep -q -- "$o" || missing="$missing $o"
    done
    if [ -z "$missing" ]; then ok "$t: every option of --help is in the man page"; else fail "$t: every option of --help is in the man page" "missing:$missing"; fi
  else
    fail "$t: has a man page" "no $man"
  fi
done
for m in "$ROOT"/man/man5/*.5; do
  warn=$(groff -man -Tutf8 -ww -z "$m" 2>&1)
  if [ -z "$warn" ]; then ok "$(basename "$m"): renders without warnings"; else fail "$(basename "$m") renders" "$warn"; fi
done

# make install honours PREFIX and DESTDIR
dest="$T/dest"
if make -s -C "$ROOT" install DESTDIR="$dest" PREFIX=/opt/wsac >/dev/null 2>&1; then
  n_bin=$(ls "$dest/opt/wsac/bin" | wc -l); n_man=$(ls "$dest/opt/wsac/share/man/man1" | wc -l)
  if [ "$n_bin" -eq "$(echo "$tools" | wc -w)" ] && [ "$n_man" -ge "$n_bin" ] && [ -f "$dest/opt/wsac/share/man/man5/wsac-stream.5" ]; then
    ok "make install DESTDIR PREFIX: binaries and man pages installed"
  else fail "make install DESTDIR PREFIX: binaries and man pages installed" "bin=$n_bin man1=$n_man"; fi
  "$dest/opt/wsac/bin/wav2mel" --help > /dev/null && ok "installed binary runs" || fail "installed binary runs"
else
  fail "make install DESTDIR PREFIX" "make install failed"
fi

# write failures: a full disk is fatal with a message; a closed pipe is quiet
sample="$ROOT/tests/data/signals/birdsong.flac"
"$BIN/wav2mel" "$sample" > /dev/full 2> "$T/full.err"; rc=$?
if [ $rc -eq 2 ] && grep -q "^wav2mel: error: writing output: No space left on device" "$T/full.err"; then
  ok "full disk: exit 2 with a clear message"
else fail "full disk: exit 2 with a clear message" "rc=$rc $(cat "$T/full.err")"; fi
( ulimit -f 1; "$BIN/wav2mel" "$sample" "$sample" "$sample" > "$T/limited.mp" 2> "$T/limit.err" ); rc=$?
if [ $rc -eq 2 ] && grep -q "File too large" "$T/limit.err"; then ok "ulimit -f: exit 2 with a clear message"
else fail "ulimit -f: exit 2 with a clear message" "rc=$rc $(cat "$T/limit.err")"; fi
"$BIN/wav2mel" "$sample" "$sample" "$sample" "$sample" 2> "$T/pipe.err" | head -c 100 > /dev/null
if [ ! -s "$T/pipe.err" ]; then ok "closed pipe (| head): upstream stops quietly"
else fail "closed pipe (| head): upstream stops quietly" "$(cat "$T/pipe.err")"; fi
"$BIN/wav2mel" -q "$sample" | "$BIN/wsac-dump" -q -r 2>&1 | head -c 10 > /dev/null
ok "closed pipe through two tools does not hang"
finish
