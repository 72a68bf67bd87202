# The checks the command-line tests share (sourced, after setting $effnet): fail and ok print a
# line (fail counts it in $failures); expect runs effnet with arguments and checks its exit status
# and a text in its output.
failures=0
fail() {
  echo "FAILED: $*"
  failures=$((failures + 1))
}
ok() { echo "ok: $*"; }
expect() { # expect <exit code> <text in output> <args...>
  local code=$1 text=$2
  shift 2
  local out
  out=$("$effnet" "$@" 2>&1)
  local got=$?
  if [ "$got" -ne "$code" ] || ! grep -qF -- "$text" <<<"$out"; then
    fail "effnet $* exited $got (want $code, '$text'), output:"$'\n'"$(head -5 <<<"$out")"
  else
    ok "effnet $* -> $code, '$text'"
  fi
}
