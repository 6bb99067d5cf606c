#!/bin/sh
# The tests that compare thread counts (and numerics against PyTorch), once per
# OpenBLAS kernel family: OPENBLAS_CORETYPE=Haswell (AVX2 + FMA), Sandybridge
# (AVX, no FMA), and unset (what OpenBLAS picks on this CPU: AVX-512 kernels
# where it has them). A verdict must not depend on the kernel a user's machine
# picks. Ends with "N passed, N failed"; exit 1 on any failure.
#   sh tests/kernels.sh [UNIT...]      (default: the units below)
cd "$(dirname "$0")/.." || exit 2
units=${*:-"c/test_gpt py/test_determinism py/test_clap_audio py/test_clap_text py/test_nnproj"}
passed=0; failed=0; failures=""
log=$(mktemp); trap 'rm -f "$log"' EXIT
for core in Haswell Sandybridge native; do
    for u in $units; do
        if [ "$core" = native ]; then
            env -u OPENBLAS_CORETYPE sh tests/run.sh "$u" > "$log" 2>&1
        else
            OPENBLAS_CORETYPE=$core sh tests/run.sh "$u" > "$log" 2>&1
        fi
        line=$(tail -n 1 "$log")
        p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
        f=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
        if [ -z "$p" ] || [ $((p + f)) -eq 0 ]; then p=0; f=1; fi  # no count, or no test ran: a failure
        passed=$((passed + p)); failed=$((failed + f))
        echo "[$core] $(head -n 1 "$log")"
        if [ "$f" -gt 0 ]; then
            failures="$failures $core:$u"
            grep -a '^    not ok\|^    |' "$log" | head -n 20
        fi
    done
done
[ -n "$failures" ] && echo "failing:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
