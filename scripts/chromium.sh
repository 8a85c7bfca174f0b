# Sourced by scripts/test: makes sure a chromium for the dashboard's browser tests is installed (Debian's package;
# Playwright drives it, its own browser download is never used). Set CHROMIUM to use another binary.
if [[ -z "${CHROMIUM:-}" ]] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then SUDO=(sudo); fi
    echo "Installing chromium with apt-get (for the dashboard's browser tests)..." >&2
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  else
    echo "The browser tests need chromium: install it (or set CHROMIUM=/path/to/chromium) and run again." >&2
    exit 1
  fi
fi
