# approval-server, installed from the locked dependencies and run as an unprivileged user.
# Used by compose.yaml (the README's "Team set-up"); on its own: docker build -t approval-server .

FROM python:3.11-slim AS build

# uv from PyPI, pinned; it builds the project's virtual environment in /opt/venv from uv.lock.
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /src

# The dependencies alone first, so that a change to the code does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --no-editable

# Then the project itself, as a regular (non-editable) package, so /src is not needed at run time. README.md (the
# package's long description) and LICENSE are named in pyproject.toml, which the build needs.
COPY README.md LICENSE ./
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable


FROM python:3.11-slim

# A fixed uid/gid, so that volumes can be given to it ahead of time.
RUN groupadd --system --gid 10001 approval \
    && useradd --system --uid 10001 --gid approval --no-create-home --home-dir /var/lib/approval-server \
       --shell /usr/sbin/nologin approval \
    && install --directory --owner approval --group approval --mode 0700 /var/lib/approval-server

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8000 \
    APPROVAL_DATA_DIR=/var/lib/approval-server

# The server reads .env and policy.toml from its working directory: mount a policy at /app/policy.toml (or set
# POLICY_FILE); settings come from the environment.
WORKDIR /app
USER 10001:10001
EXPOSE 8000

# The slim image has no curl: ask /healthz with the standard library (a non-2xx answer raises, so exits 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SERVER_PORT', '8000') + '/healthz', timeout=4)"]

ENTRYPOINT ["approval-server"]
CMD ["serve"]
