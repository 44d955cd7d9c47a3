#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, the Python environment) and runs every check and test.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql redis-server prometheus prometheus-alertmanager chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# kubectl cross-checks our patch bodies offline; the machine image ships one, Debian's is the fallback.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # The packages' own services are not wanted: the test harness starts its own servers on free ports.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff";          .venv/bin/ruff check .
echo "== mypy --strict"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== playbooks";     .venv/bin/remediate lint playbooks
echo "== playbook tests"; .venv/bin/remediate test
echo "== deploy files";  .venv/bin/hadolint deploy/container/Dockerfile
kubectl kustomize deploy/kubernetes | .venv/bin/kubernetes-validate --strict --quiet -
promtool check rules deploy/prometheus/rules/*.yaml deploy/prometheus/health/remediate.rules.yaml
promtool test rules deploy/prometheus/health/remediate.test.yaml
# Four workers on two cores: most of a test's time is spent waiting on servers and processes. Each worker starts
# its own servers; a file's tests stay on one worker (module fixtures). Coverage counts the processes tests start.
echo "== tests";         .venv/bin/pytest -p no:cacheprovider -n "${TEST_WORKERS:-4}" --dist loadfile \
                           --cov --cov-report=term:skip-covered "$@"
