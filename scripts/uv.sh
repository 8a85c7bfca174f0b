# Sourced by the other scripts: makes `uv` available as "$UV", installing it from PyPI if needed.
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
  UV=(python3 -m uv)
else
  echo "Installing uv (the Python package manager this project uses) with pip..." >&2
  python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv \
    || python3 -m pip install --quiet uv
  UV=(python3 -m uv)
fi
# The uv program itself on PATH as well (pip --user puts it in a folder PATH may lack): the tests run it by name.
if ! command -v uv >/dev/null 2>&1; then
  PATH="$(dirname "$(python3 -c 'import uv; print(uv.find_uv_bin())')"):$PATH"
  export PATH
  UV=(uv)
fi
