#!/usr/bin/env bash
# Installs what the test suite needs, only when it is missing: quiet and quick when all is there.
# Debian packages via apt-get (root, or sudo), PyPI packages via pip, cargo-nextest via cargo.
set -euo pipefail

# Debian package names, each with a command that proves it is installed.
DEBIAN_PACKAGES=(
  "docker-registry:docker-registry"
  "skopeo:skopeo"
  "umoci:umoci"
  "git:/usr/lib/git-core/git-http-backend"
  "openssh-server:/usr/sbin/sshd"
  "openssl:openssl"
  "jq:jq"
  "graphviz:dot"
)
# PyPI requirement strings, each with the command or module that proves it is installed.
PYPI_PACKAGES=(
  "moto[server]:moto_server"
)

missing_debian=()
for entry in "${DEBIAN_PACKAGES[@]}"; do
  package=${entry%%:*}; probe=${entry#*:}
  if [[ $probe == /* ]]; then [[ -e $probe ]] && continue; else command -v "$probe" >/dev/null 2>&1 && continue; fi
  missing_debian+=("$package")
done
# PostgreSQL: the tests use the server on 127.0.0.1:5432 when one answers; otherwise
# scripts/test.sh starts a throwaway one, which needs the server programs (initdb, pg_ctl).
if [[ -z ${GANTRY_TEST_DATABASE_URL:-} ]] && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null \
  && ! command -v initdb >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  missing_debian+=("postgresql")
fi
if ((${#missing_debian[@]})); then
  echo "installing Debian packages: ${missing_debian[*]}" >&2
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing_debian[@]}" >/dev/null
fi

missing_pypi=()
for entry in "${PYPI_PACKAGES[@]}"; do
  requirement=${entry%:*}; probe=${entry##*:}
  command -v "$probe" >/dev/null 2>&1 && continue
  missing_pypi+=("$requirement")
done
if ((${#missing_pypi[@]})); then
  echo "installing PyPI packages: ${missing_pypi[*]}" >&2
  python3 -m pip install --quiet --disable-pip-version-check "${missing_pypi[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked --quiet cargo-nextest
fi
