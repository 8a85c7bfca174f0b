# Sourced by scripts/test: makes sure Debian's libfaketime is installed, for the fault tests that run a replica with
# its wall clock off (LD_PRELOAD), and exports its path as APPROVAL_TEST_LIBFAKETIME. Set that yourself to use another
# copy; without it those tests are skipped.
_libfaketime() {
  find /usr/lib /usr/local/lib -name libfaketime.so.1 -path '*faketime*' 2>/dev/null | sort | head -n 1
}
if [[ -z "${APPROVAL_TEST_LIBFAKETIME:-}" ]]; then
  APPROVAL_TEST_LIBFAKETIME="$(_libfaketime)"
  if [[ -z "$APPROVAL_TEST_LIBFAKETIME" ]] && command -v apt-get >/dev/null 2>&1; then
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then SUDO=(sudo); fi
    echo "Installing libfaketime with apt-get (for the replica clock-skew tests)..." >&2
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends libfaketime >/dev/null
    APPROVAL_TEST_LIBFAKETIME="$(_libfaketime)"
  fi
  if [[ -z "$APPROVAL_TEST_LIBFAKETIME" && -n "${CI:-}" ]]; then
    echo "CI needs libfaketime for the replica clock-skew tests, and it could not be installed." >&2
    exit 1
  elif [[ -z "$APPROVAL_TEST_LIBFAKETIME" ]]; then
    echo "libfaketime is not installed: the replica clock-skew tests will be skipped." >&2
  fi
  export APPROVAL_TEST_LIBFAKETIME
fi
