# The checks the command-line tests share (sourced, after setting $effnet): fail and ok print a
# line (fail counts it in $failures); expect runs effnet with arguments and checks its exit status
# and a text in its output; h5edit, h5poke and h5set change a weights file with h5py.
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
h5edit() { # h5edit FILE PYTHON-STATEMENTS: runs them with f = h5py.File(FILE, "r+") and np
  /usr/bin/python3 -c "import h5py, sys, numpy as np; f = h5py.File(sys.argv[1], 'r+'); $2" "$1"
}
h5poke() { # h5poke FILE PYTHON-STATEMENTS: the same, and clears the whole file's checksum (its user
  # block), as a copy by HDF5's tools would: each tensor's and the attributes' checksums stay
  h5edit "$1" "$2; f.close(); open(sys.argv[1], 'r+b').write(bytes(512))"
}
h5set() { # h5set FILE PYTHON-STATEMENTS: the same, and drops every checksum, as a file from before them
  h5poke "$1" "$2; del f.attrs['attributes_crc32c']; f.visititems(lambda n, o: o.attrs.__delitem__('crc32c') \
    if isinstance(o, h5py.Dataset) else None)"
}
